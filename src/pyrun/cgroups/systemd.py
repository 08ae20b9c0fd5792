"""The systemd cgroup driver (--systemd-cgroup), as runc's on cgroup v2.

The container's cgroup is a transient scope unit: `slice:prefix:name` from
linux.cgroupsPath names the slice it goes in and the unit, `<prefix>-<name>.scope`
(runc's rules, ExpandSlice's nesting: `a-b.slice` lives in `a.slice`).
systemd makes it (StartTransientUnit, Delegate=yes) with a placeholder
process in it, as a scope cannot start empty; stage 1 then joins it
through cgroup.procs and the placeholder is reaped with the warm-join child.
Limits systemd owns go to the unit (SetUnitProperties), so that a daemon
reload does not undo them, and every limit is also written to the cgroup
files, as runc does.  Freezing, membership, stats and OOM events are plain
cgroup v2 (fs.V2Cgroup).  `delete` stops and resets the unit.

The D-Bus client (jeepney, pure Python) is imported only by the calls that
need the bus: `state`, `list` and `start` never load it.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups.base import Cgroup
from pyrun.cgroups.fs import V2Cgroup
from pyrun.errors import PyrunError

# runc's words when the flag is given on a host systemd does not manage, and the flag
UNAVAILABLE = "systemd not running on this host, cannot use systemd cgroups manager (--systemd-cgroup)"
V2_ONLY = "--systemd-cgroup: pyrun's systemd cgroups manager needs a pure cgroup v2 host"
BAD_PATH = 'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups, got "{}" instead'
INFINITY = (1 << 64) - 1      # systemd's "infinity" for uint64 properties
MOUNT = "/sys/fs/cgroup"


def running() -> bool:
    """systemd is PID 1 (sd_booted(3): it made /run/systemd/system)."""
    return os.path.isdir("/run/systemd/system")


# --- names ---------------------------------------------------------------------------

def expand_slice(slice_name: str) -> str:
    """`a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` -> `/` (the root slice)."""
    suffix = ".slice"
    if not slice_name.endswith(suffix) or "/" in slice_name:
        raise PyrunError(f"invalid slice name: {slice_name}")
    stem = slice_name[:-len(suffix)]
    if stem == "-":
        return "/"
    path, prefix = "", ""
    for part in stem.split("-"):
        if not part:
            raise PyrunError(f"invalid slice name: {slice_name}")
        path += f"/{prefix}{part}{suffix}"
        prefix += part + "-"
    return path


def parse_path(cgroups_path: str | None, container_id: str, rootless: bool) -> tuple[str, str]:
    """(slice, unit) from linux.cgroupsPath: `slice:prefix:name`, or the
    default `system.slice` (`user.slice` rootless) and `runc-<id>.scope`."""
    default_slice = "user.slice" if rootless else "system.slice"
    if not cgroups_path:
        return default_slice, f"runc-{container_id}.scope"
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise PyrunError(BAD_PATH.format(cgroups_path))
    slice_name, prefix, name = parts
    unit = name if name.endswith(".slice") else f"{prefix}-{name}.scope"
    expand_slice(slice_name or default_slice)       # refuse a bad name before anything is made
    return slice_name or default_slice, unit


# --- linux.resources -> unit properties ------------------------------------------

def range_to_bits(text: str) -> bytes:
    """cpuset list ("0-3,8") -> the little-endian bitmask AllowedCPUs takes."""
    mask = 0
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise PyrunError(f'invalid cpuset range "{text}"')
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise PyrunError(f'invalid cpuset range "{text}"')
        for n in range(first, last + 1):
            mask |= 1 << n
    return mask.to_bytes(max(1, (mask.bit_length() + 7) // 8), "little")


def resource_properties(res: dict[str, Any], version: int = 252) -> list[tuple[str, tuple[str, Any]]]:
    """The limits systemd owns on cgroup v2, as (name, (signature, value));
    runc's genV2ResourcesProperties, plus IOWeight and the IO bandwidth and
    IOPS maxima.  The rest (and these too) go to the files afterwards."""
    from pyrun.cgroups import convert
    props: list[tuple[str, tuple[str, Any]]] = []
    mem = res.get("memory") or {}
    limit, swap, reservation = mem.get("limit") or 0, mem.get("swap") or 0, mem.get("reservation") or 0
    if limit:
        props.append(("MemoryMax", ("t", INFINITY if limit < 0 else limit)))
    if reservation:
        props.append(("MemoryLow", ("t", INFINITY if reservation < 0 else reservation)))
    swap_v2 = convert.swap_to_v2(swap, limit)
    if swap_v2:
        props.append(("MemorySwapMax", ("t", INFINITY if swap_v2 < 0 else swap_v2)))
    elif swap and swap == limit:
        props.append(("MemorySwapMax", ("t", 0)))        # memory == memory+swap: no swap at all
    cpu = res.get("cpu") or {}
    weight = convert.cpu_shares_to_weight(cpu.get("shares") or 0)
    if weight:
        props.append(("CPUWeight", ("t", weight)))
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    if period and version >= 242:
        props.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota or period:
        per_sec = INFINITY
        if quota > 0:
            per_sec = quota * 1_000_000 // (period or 100_000)
            if per_sec % 10_000:                  # systemd keeps 10 ms steps: round up, as runc
                per_sec = (per_sec // 10_000 + 1) * 10_000
        props.append(("CPUQuotaPerSecUSec", ("t", per_sec)))
    if version >= 244:
        if cpu.get("cpus"):
            props.append(("AllowedCPUs", ("ay", range_to_bits(cpu["cpus"]))))
        if cpu.get("mems"):
            props.append(("AllowedMemoryNodes", ("ay", range_to_bits(cpu["mems"]))))
    tasks = convert.pids_max((res.get("pids") or {}).get("limit"))
    if tasks is not None:                                  # 0 became 1: systemd refuses 0
        props.append(("TasksMax", ("t", INFINITY if tasks == "max" else int(tasks))))
    bio = res.get("blockIO") or {}
    if bio.get("weight"):
        props.append(("IOWeight", ("t", convert.blkio_weight_to_io_weight(bio["weight"]))))
    for key, name in (("throttleReadBpsDevice", "IOReadBandwidthMax"),
                      ("throttleWriteBpsDevice", "IOWriteBandwidthMax"),
                      ("throttleReadIOPSDevice", "IOReadIOPSMax"),
                      ("throttleWriteIOPSDevice", "IOWriteIOPSMax")):
        entries = [(f"/dev/block/{d['major']}:{d['minor']}", d["rate"] or INFINITY) for d in bio.get(key) or []]
        if entries:
            props.append((name, ("a(st)", entries)))
    return props


def device_properties(spec: dict[str, Any]) -> list[tuple[str, tuple[str, Any]]]:
    """DevicePolicy and DeviceAllow for linux.resources.devices.

    pyrun's own eBPF filter on the scope enforces the exact rules (the last
    match wins); systemd's program runs beside it, so what systemd is given
    may be looser than the rules but never stricter.  Rules reduce to a
    whitelist when the last "every device" rule denies: each allowed
    (type, major, minor) keeps the access bits no later deny covering it
    took away.  Anything else (a blacklist, an allow of `*:n`) leaves
    systemd's policy at auto."""
    from pyrun.cgroups.devices import device_rules
    rules = device_rules(spec)
    last_all = max(i for i, r in enumerate(rules) if r.kind == "a")    # rules[0] is always "deny a"
    if rules[last_all].allow:
        return [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))]
    allowed: dict[tuple[str, int | None, int | None], set[str]] = {}
    for r in rules[last_all + 1:]:
        key = (r.kind, r.major, r.minor)
        if r.allow:
            if r.major is None and r.minor is not None:
                return [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))]
            allowed.setdefault(key, set()).update(r.access)
            continue
        for (kind, major, minor), access in allowed.items():
            covered = kind == r.kind and r.major in (None, major) and r.minor in (None, minor)
            if covered:
                access.difference_update(r.access)
    entries = []
    for (kind, major, minor), access in allowed.items():
        if not access:
            continue
        group = "char" if kind == "c" else "block"
        if major is None:
            path = f"{group}-*"
        elif minor is None:
            path = f"{group}-{major}"
        else:
            path = f"/dev/{group}/{major}:{minor}"
        entries.append((path, "".join(c for c in "rwm" if c in access)))
    return [("DevicePolicy", ("s", "strict")), ("DeviceAllow", ("a(ss)", entries))]


# --- the bus ---------------------------------------------------------------------------

class Bus:
    """One connection to systemd's manager: the system bus, or the user's
    own (rootless: systemdUser)."""

    def __init__(self, user: bool) -> None:
        try:
            from jeepney import DBusAddress
            from jeepney.io.blocking import open_dbus_connection
        except ImportError:
            raise PyrunError("systemd cgroup driver: the jeepney D-Bus library is not installed") from None
        address = self._user_address() if user else "SYSTEM"
        try:
            self.conn = open_dbus_connection(bus=address)
        except (OSError, KeyError, ValueError) as e:
            raise PyrunError(f"systemd cgroup driver: unable to connect to the "
                             f"{'user' if user else 'system'} bus: {e}") from None
        self.subscribed = False
        self.manager = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                                   interface="org.freedesktop.systemd1.Manager")

    @staticmethod
    def _user_address() -> str:
        address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        if address:
            return address
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
        return f"unix:path={runtime}/bus"

    def close(self) -> None:
        self.conn.close()

    def call(self, method: str, signature: str = "", *args: Any) -> tuple[Any, ...]:
        from jeepney import new_method_call
        from jeepney.wrappers import DBusErrorResponse
        msg = new_method_call(self.manager, method, signature or None, args)
        try:
            reply = self.conn.send_and_get_reply(msg, timeout=30)
            from jeepney.wrappers import unwrap_msg
            return unwrap_msg(reply)
        except DBusErrorResponse as e:
            raise BusError(e.name, " ".join(str(a) for a in e.data) or e.name) from None

    def version(self) -> int:
        from jeepney import Properties
        from jeepney.wrappers import unwrap_msg
        text = unwrap_msg(self.conn.send_and_get_reply(Properties(self.manager).get("Version"), timeout=30))[0][1]
        digits = ""
        for ch in str(text).lstrip('"v'):
            if not ch.isdigit():
                break
            digits += ch
        return int(digits) if digits else 0

    def manager_cgroup(self) -> str:
        from jeepney import Properties
        from jeepney.wrappers import unwrap_msg
        return unwrap_msg(self.conn.send_and_get_reply(Properties(self.manager).get("ControlGroup"),
                                                        timeout=30))[0][1]

    def run_job(self, method: str, signature: str, *args: Any, timeout: float = 30.0) -> str:
        """Call a method that queues a job and wait for the job's JobRemoved: its result."""
        from jeepney import MatchRule, message_bus
        # No sender in the local filter: signals carry systemd's unique name (":1.0"),
        # and only the bus daemon maps the well-known one.
        rule = MatchRule(type="signal", path="/org/freedesktop/systemd1",
                         interface="org.freedesktop.systemd1.Manager", member="JobRemoved")
        if not self.subscribed:       # JobRemoved is sent to subscribed clients only
            bus_rule = MatchRule(type="signal", sender="org.freedesktop.systemd1", path="/org/freedesktop/systemd1",
                                 interface="org.freedesktop.systemd1.Manager", member="JobRemoved")
            self.conn.send_and_get_reply(message_bus.AddMatch(bus_rule), timeout=30)
            self.call("Subscribe")
            self.subscribed = True
        with self.conn.filter(rule) as queue:
            job = self.call(method, signature, *args)[0]
            while True:
                signal = self.conn.recv_until_filtered(queue, timeout=timeout)
                _id, path, _unit, result = signal.body
                if path == job:
                    return result


class BusError(PyrunError):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name


# --- the cgroup ------------------------------------------------------------------------

def new(spec: dict[str, Any], container_id: str, rootless_flag: str = "false") -> Cgroup:
    if not running():
        raise PyrunError(UNAVAILABLE)
    from pyrun.cgroups.layout import detect
    from pyrun.rootless import rootless_cgroups
    layout = detect()
    if layout.mode != "v2":
        raise PyrunError(V2_ONLY)
    user = bool(rootless_cgroups(rootless_flag))
    slice_name, unit = parse_path((spec.get("linux") or {}).get("cgroupsPath"), container_id, user)
    cgroup = SystemdCgroup(unit, "", user)
    cgroup.start(slice_name, container_id, spec, layout.hierarchies[0].mountpoint)
    cgroup.binds = [("", cgroup.paths[""])]
    return cgroup


def load(state: dict[str, Any]) -> Cgroup:
    paths = state.get("cgroup_paths") or {}
    return SystemdCgroup(str(state.get("cgroup_unit") or ""), str(paths.get("") or ""),
                         bool(state.get("cgroup_user")))


class SystemdCgroup(V2Cgroup):
    """A transient scope: systemd makes and removes it, limits go to the
    unit and the files; everything else is its cgroup v2 directory."""

    def __init__(self, unit: str, path: str, user: bool) -> None:
        super().__init__({"": path})
        self.unit, self.user = unit, user
        self._bus: Bus | None = None
        self._version = 0

    def __str__(self) -> str:
        return f"{self.unit} ({self.paths['']})"

    def plan(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"do": "StartTransientUnit", "unit": self.unit, "user": self.user, "path": self.paths[""]}] \
            + super().plan(spec)[1:]

    def record(self) -> dict[str, Any]:
        return {"cgroup_paths": dict(self.paths), "cgroup_manager": "systemd",
                "cgroup_unit": self.unit, "cgroup_user": self.user}

    def bus(self) -> Bus:
        if self._bus is None:
            self._bus = Bus(self.user)
            self._version = self._bus.version()
        return self._bus

    def start(self, slice_name: str, container_id: str, spec: dict[str, Any], mountpoint: str) -> None:
        """StartTransientUnit with a placeholder in it, then the devices filter."""
        bus = self.bus()
        base = expand_slice(slice_name)
        if self.user:
            base = os.path.join(bus.manager_cgroup(), base.lstrip("/"))
        self.paths[""] = os.path.normpath(os.path.join(mountpoint, base.lstrip("/"), self.unit))
        self._placeholder()
        props: list[tuple[str, tuple[str, Any]]] = [
            ("Description", ("s", f"libcontainer container {container_id}")),
            ("Slice", ("s", slice_name)) if self.unit.endswith(".scope") else ("Wants", ("as", [slice_name])),
            ("Delegate", ("b", True)),
            ("PIDs", ("au", [self._warm_pid])),
            ("MemoryAccounting", ("b", True)), ("CPUAccounting", ("b", True)),
            ("IOAccounting", ("b", True)), ("TasksAccounting", ("b", True)),
            ("DefaultDependencies", ("b", False)),
        ]
        props += device_properties(spec)
        try:
            try:
                result = bus.run_job("StartTransientUnit", "ssa(sv)a(sa(sv))", self.unit, "replace", props, [])
            except BusError as e:
                if "UnitExists" not in e.name:
                    raise
                self._reset_failed()      # a failed leftover of the same name, as runc retries once
                result = bus.run_job("StartTransientUnit", "ssa(sv)a(sa(sv))", self.unit, "replace", props, [])
            if result != "done":
                self._reset_failed()
                raise PyrunError(f"error creating systemd unit `{self.unit}`: got `{result}`")
            if not os.path.isdir(self.paths[""]):
                raise PyrunError(f"systemd unit {self.unit}: no cgroup at {self.paths['']}")
            self.set_devices(spec)
        except BaseException as e:
            self.reap_warm()
            try:
                self.destroy()
            except (OSError, PyrunError):
                pass
            if isinstance(e, (OSError, ValueError)):
                raise PyrunError(f"unable to apply cgroup configuration: {e}") from None
            raise

    def _placeholder(self) -> None:
        """A child that waits in the scope until stage 1 has joined it
        (`reap_warm`, at INIT_PID): an empty scope would be stopped."""
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(w)
            try:
                os.read(r, 1)
            finally:
                os._exit(0)
        os.close(r)
        self._warm_pid, self._placeholder_fd = pid, w

    def warm_join(self) -> None:
        """The placeholder already made systemd move a process in."""

    def reap_warm(self) -> None:
        fd = getattr(self, "_placeholder_fd", -1)
        if fd >= 0:
            os.close(fd)
            self._placeholder_fd = -1
        super().reap_warm()

    def update(self, resources: dict[str, Any] | None) -> None:
        """SetUnitProperties for what systemd owns, then every file (runc's order)."""
        if not resources:
            return
        bus = self.bus()          # also learns systemd's version
        props = resource_properties(resources, self._version)
        if props:
            try:
                bus.call("SetUnitProperties", "sba(sv)", self.unit, True, props)
            except BusError as e:
                from pyrun.cgroups.cgfile import CgroupError
                raise CgroupError(f"unable to set unit properties: {e}") from None
        super().update(resources)

    def destroy(self, timeout: float = 5.0) -> None:
        """StopUnit (systemd kills what is left), reset a failed state, then
        remove whatever sub-cgroups an exec made, as runc."""
        self.reap_warm()
        if self.unit:
            try:
                result = self.bus().run_job("StopUnit", "ss", self.unit, "replace")
                if result != "done":
                    from pyrun import log
                    log.warning(f"error removing unit `{self.unit}`: got `{result}`. Continuing...")
            except BusError as e:
                if "NoSuchUnit" not in e.name:
                    raise PyrunError(f"unable to stop unit {self.unit}: {e}") from None
            self._reset_failed()
        if self.paths[""]:
            super().destroy(timeout)
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    def _reset_failed(self) -> None:
        try:
            self.bus().call("ResetFailedUnit", "s", self.unit)
        except BusError:
            pass
