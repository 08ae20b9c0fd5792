"""cgroupfs: the container's cgroup as directories pyrun makes itself.

One directory per hierarchy, keyed like layout.Hierarchy.key ("" for
cgroup2, "cpu,cpuacct" for a v1 mount).  That key convention stays in this
module: V1Cgroup, V2Cgroup and HybridCgroup differ only in which directory
holds the freezer, the OOM source and the device rules, and in which
writers (resources_v1/resources_v2) set the limits.
"""
from __future__ import annotations

import errno
import os
import time
from _signal import SIGKILL    # not signal: its enums cost every delete ~2 ms

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups.base import Cgroup
from pyrun.errors import PyrunError


def new(spec: dict[str, Any], container_id: str, rootless_flag: str = "false") -> Cgroup:
    """Make the container's directories (runc's cgroupsPath rules), or the
    null cgroup for a rootless container that may not (cgroups/rootless.py)."""
    from pyrun.cgroups.ownership import owner_uid
    from pyrun.rootless import rootless_cgroups
    owner = owner_uid(spec)      # an unmapped process.user.uid fails here, before any mkdir
    cgroup, _warning = planned(spec, container_id, rootless_flag)
    if not isinstance(cgroup, FsCgroup):
        return cgroup
    rootless = rootless_cgroups(rootless_flag)
    _refuse_occupied(cgroup.paths)
    if cgroup.frozen():        # frozen beforehand: the init would freeze as it joins, create wait forever
        raise PyrunError("container's cgroup unexpectedly frozen")
    cgroup.check((spec.get("linux") or {}).get("resources"))
    try:
        cgroup.create(owner)
        cgroup.warm_join()
    except OSError as e:     # e.g. an ordinary user with --rootless=false
        from pyrun.errors import oserror_text
        try:
            cgroup.destroy()
        except OSError:
            pass
        raise PyrunError(f"unable to apply cgroup configuration: {oserror_text(e)}") from None
    try:
        cgroup.set_devices(spec)
    except (OSError, ValueError) as e:
        if not rootless:       # runc: device rules are best effort when rootless
            cgroup.destroy()
            raise PyrunError(f"unable to apply device rules: {getattr(e, 'strerror', None) or e}") from None
    return cgroup


def planned(spec: dict[str, Any], container_id: str, rootless_flag: str = "false") -> tuple[Cgroup, str | None]:
    """The cgroup `new` makes, with nothing made yet (`pyrun explain` stops
    here): its directories and binds, or the null cgroup and the warning a
    rootless container without a writable cgroup gets."""
    from pyrun.cgroups.layout import container_paths, detect
    from pyrun.cgroups.ownership import owner_uid
    from pyrun.rootless import rootless_cgroups
    owner_uid(spec)              # an unmapped process.user.uid fails here, before any mkdir
    layout = detect()
    paths = container_paths((spec.get("linux") or {}).get("cgroupsPath"), container_id, layout)
    if rootless_cgroups(rootless_flag):
        from pyrun.cgroups import rootless as rootless_cgroup
        own = rootless_cgroup.plan(spec, paths, layout)
        if own is not None:
            from pyrun.cgroups.null import NullCgroup
            return NullCgroup(own), rootless_cgroup.WARNING
    cgroup = from_paths(paths)
    if layout.mode == "v2":
        cgroup.binds = [("", paths[""])]
    else:   # v1 and hybrid: one directory per v1 hierarchy, as runc shows them
        cgroup.binds = [(os.path.basename(h.mountpoint), paths[h.key])
                        for h in layout.hierarchies if not h.is_v2]
    return cgroup, None


def of_process(pid: int) -> Cgroup:
    """The cgroup `pid` is in, as host directories (/proc/<pid>/cgroup is
    relative to the reader's cgroup namespace and the mount's root)."""
    from pyrun.cgroups.layout import detect
    rels: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().split("\n"):
            parts = line.split(":", 2)
            if len(parts) == 3:
                rels[parts[1]] = parts[2]
    dirs = {}
    for h in detect().hierarchies:
        rel = rels.get(h.key)
        if rel is not None:
            if h.root != "/" and rel.startswith(h.root):
                rel = rel[len(h.root):] or "/"
            dirs[h.key] = os.path.join(h.mountpoint, rel.lstrip("/"))
    if not dirs:
        from pyrun.cgroups.null import NullCgroup
        return NullCgroup()
    return from_paths(dirs)


def from_paths(paths: dict[str, str]) -> FsCgroup:
    """v1, v2 or hybrid, from which hierarchies the container has a directory in."""
    if "" not in paths:
        return V1Cgroup(paths)
    return HybridCgroup(paths) if len(paths) > 1 else V2Cgroup(paths)


def _refuse_occupied(paths: dict[str, str]) -> None:
    """A cgroupsPath naming a cgroup that already holds processes (the root
    cgroup, a slice, another container's) would have `kill --all` and
    `delete` SIGKILL them: refuse it, as runc >= 1.2 does (1.1 only warned),
    in its words."""
    pids: set[str] = set()      # a process shows in every v1 hierarchy: count it once
    for path in paths.values():
        for dirpath, _dirs, _files in os.walk(path):
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids.update(f.read().split())
            except OSError:
                continue
    if pids:
        raise PyrunError(f"container's cgroup is not empty: {len(pids)} process(es) found")


class FsCgroup(Cgroup):
    """What every cgroupfs layout shares: directories, membership, removal."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self._warm_pid = 0

    def __str__(self) -> str:
        return " ".join(sorted(self.paths.values()))

    def record(self) -> dict[str, Any]:
        return {"cgroup_paths": dict(self.paths)}

    # --- where things are (the subclasses' differences) -------------------------

    def v1_dir(self, controller: str) -> str | None:
        """The container's directory in the v1 hierarchy holding `controller`."""
        for key, path in self.paths.items():
            if controller in key.split(","):
                return path
        return None

    def controller_dirs(self) -> dict[str, str]:
        """v1 controller name -> directory ("cpu" and "cpuacct" may share one)."""
        return {name: path for key, path in self.paths.items() if key
                for name in key.split(",") if not name.startswith("name=")}

    def freezer(self) -> tuple[str, str] | None:
        """("v1" | "v2", directory) of the freezer in use: v1's where it is
        mounted (as runc), else cgroup.freeze.  The one place that decides."""
        return self._v1_else_v2("freezer")

    def _memory(self) -> tuple[str, str] | None:
        return self._v1_else_v2("memory")

    def _v1_else_v2(self, controller: str) -> tuple[str, str] | None:
        """("v1", its directory) where the controller has a v1 hierarchy, else
        ("v2", the unified directory), else None."""
        v1 = self.v1_dir(controller)
        if v1 is not None:
            return "v1", v1
        if "" in self.paths:
            return "v2", self.paths[""]
        return None

    def freezer_dir(self) -> str | None:
        target = self.freezer()
        return target[1] if target else None

    def mount_binds(self) -> list[tuple[str, str]]:
        if self.binds or list(self.paths) == [""]:
            return self.binds or [("", self.paths[""])]
        from pyrun.cgroups.layout import detect
        return [(os.path.basename(h.mountpoint), self.paths[h.key])
                for h in detect().hierarchies if not h.is_v2 and h.key in self.paths]

    def audit(self) -> dict[str, Any]:
        limits: dict[str, str] = {}
        for key, files in (("memory", ("memory.max", "memory.limit_in_bytes")), ("pids", ("pids.max",)),
                           ("cpu", ("cpu.max", "cpu.cfs_quota_us")), ("devices", ("devices.list",))):
            dirs = [p for k, p in self.paths.items() if key in k.split(",")]
            for d in dirs + ([self.paths[""]] if "" in self.paths else []):
                for name in files:
                    try:
                        with open(os.path.join(d, name)) as f:
                            limits[name] = f.read().strip()
                    except OSError:
                        pass
        return {"paths": dict(self.paths), "limits": limits}

    # --- making it -----------------------------------------------------------------

    def plan(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """The directories made and the device rules set (devices.py's list)."""
        from pyrun.cgroups.devices import rules_for
        via = "devices.allow/devices.deny" if self.v1_dir("devices") is not None else "eBPF program"
        return [{"do": "mkdir", "paths": sorted(self.paths.values())},
                {"do": "device rules", "via": via,
                 "rules": [("allow " if allow else "deny ") + line for allow, line in rules_for(spec)]}]

    def join_plan(self) -> list[dict[str, Any]]:
        return [{"do": "write our pid to cgroup.procs", "paths": sorted(self.paths.values())}]

    def create(self, owner: int | None = None) -> None:
        """Make the directories; `owner` (a host uid, from ownership.owner_uid)
        is given the v2 cgroup on pure v2 hosts only (V2Cgroup)."""
        for key, path in self.paths.items():
            os.makedirs(path, exist_ok=True)
            if "cpuset" in key.split(","):
                _inherit_cpuset(path)

    def set_devices(self, spec: dict[str, Any]) -> None:
        """linux.resources.devices: v1 devices files, else an eBPF filter on cgroup2."""
        from pyrun.cgroups.devices import apply_v1, apply_v2
        devices_dir = self.v1_dir("devices")
        if devices_dir is not None:
            apply_v1(devices_dir, spec)
        elif "" in self.paths:
            apply_v2(self.paths[""], spec)

    def warm_join(self) -> None:
        """Start the slow part of joining a cgroup while this process goes on.

        Each write to a cgroup.procs file takes the kernel's global
        cgroup_threadgroup_rwsem for writing; the first writer after a quiet
        spell waits for an RCU grace period (5-15 ms on this VM), and runc pays
        it too.  A throwaway child that joins one of the container's own
        directories right after they are made starts that grace period while the
        parent prepares the stages; stage 1's join, some ms later, then takes
        the lock's fast path (0.4 ms).  The child writes "0" (itself), does
        nothing else and exits; `reap_warm` collects it before any limit is
        written, so it never counts against pids.max.  Memory and freezer
        directories are avoided: its exit must not be charged or frozen.
        """
        if self._warm_pid:
            return
        path = next((p for k, p in self.paths.items()
                     if not {"memory", "freezer"} & set(k.split(","))), None)
        if path is None:
            return
        pid = os.fork()
        if pid == 0:
            try:
                fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
                os.write(fd, b"0")
            except OSError:
                pass
            os._exit(0)
        self._warm_pid = pid

    def reap_warm(self) -> None:
        """Collect `warm_join`'s child.  Normally long gone; SIGKILL first in
        case it is not (a cgroup v2 directory frozen under it, or an early
        failure): it has nothing to finish."""
        pid, self._warm_pid = self._warm_pid, 0
        if pid:
            try:
                os.kill(pid, SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass

    def join(self, pid: int) -> None:
        for path in self.paths.values():
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def sub(self, subs: dict[str, str]) -> Cgroup:
        """Checked before anything is forked: a sub-cgroup must lie at or below
        the container's own directory in its hierarchy, or the process would
        escape the container's limits (`..`), or a crafted value would have us
        write a `cgroup.procs` anywhere on the host.  cgroupfs refuses symlinks,
        so the check on the normalised path is the whole check.  runc 1.4.3's
        words (its v2 and controller:path forms exactly; on v1 a single path
        adds "error adding pid N to cgroups", but no process exists yet here)."""
        paths = dict(self.paths)
        if not subs:
            return self
        if "" in subs:                     # one path for every hierarchy (the only form on v2)
            wanted = {key: subs[""] for key in paths}
        else:
            wanted = {}
            for controller, sub in subs.items():
                keys = [key for key in paths if controller in key.split(",")]
                if not keys:
                    raise PyrunError(f"unable to start container process: unknown controller {controller} "
                                     f"in SubCgroupPaths", exit_code=255)
                wanted.update((key, sub) for key in keys)
        for key, sub in wanted.items():
            base = paths[key]
            target = os.path.normpath(os.path.join(base, sub.lstrip("/")))
            if target != base and not target.startswith(base + "/"):
                # runc 1.4's words, then runc 1.1-1.3's: callers' scripts grep either
                raise PyrunError(f"unable to start container process: bad sub cgroup path: {sub} "
                                 f"is not a sub cgroup path", exit_code=255)
            paths[key] = target
        return from_paths(paths)

    # --- limits ---------------------------------------------------------------------

    def prepare(self, resources: dict[str, Any] | None) -> None:
        if resources:
            __import__(self._writers)

    _writers = "pyrun.cgroups.resources_v1"

    # --- freezer, processes, stats ----------------------------------------------------

    def freeze(self) -> None:
        from pyrun.cgroups import freezer
        target = self.freezer()
        if target is None:
            raise OSError(0, freezer.NO_FREEZER)
        freezer.freeze(*target)

    def thaw(self) -> None:
        target = self.freezer()
        if target is not None:
            from pyrun.cgroups import freezer
            freezer.thaw(*target)

    def frozen(self) -> bool:
        """Read here, not through freezer.py: every `state`, `start` and `list` asks."""
        target = self.freezer()
        if target is None:
            return False
        kind, cgroup = target
        name, word = ("freezer.state", "FROZEN") if kind == "v1" else ("cgroup.freeze", "1")
        try:
            with open(os.path.join(cgroup, name)) as f:
                return f.read().strip() == word
        except OSError:
            return False

    def pids(self) -> list[int]:
        from pyrun.cgroups.stats import all_pids
        return all_pids(self.paths)

    def kill(self, sig: int) -> bool:
        """Every process in every hierarchy, sub-cgroups included.

        As runc does, the cgroup is frozen while the pids are listed and
        signalled, so no new process slips in between, then thawed (also
        thawing a paused container, so that the signals are acted on)."""
        from pyrun import log
        from pyrun.cgroups.stats import all_pids
        try:
            self.freeze()
        except OSError as e:
            log.warning(f"unable to freeze before signalling: {e.strerror or e}")
        try:
            for pid in all_pids(self.paths):
                _kill(pid, sig)
        finally:
            try:
                self.thaw()
            except OSError as e:
                log.warning(f"unable to thaw: {e.strerror or e}")
        return True

    def stats(self) -> dict[str, Any]:
        from pyrun.cgroups.stats import collect
        return collect(self.paths)

    def oom_events(self) -> Any:
        from pyrun.cgroups.oom import Watch
        return Watch(*(self._memory() or (None, "")))

    # --- removal ------------------------------------------------------------------------

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill what is left (without a pid namespace the init's death kills
        nothing else), then remove the directories, retrying on EBUSY."""
        self.reap_warm()
        if self.pids():
            self.kill(SIGKILL)
        deadline = time.monotonic() + timeout
        for path in self.paths.values():
            while True:
                try:
                    _rmdir_tree(path)
                    break
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                        raise OSError(e.errno, f"unable to remove cgroup {path}: "
                                               f"{e.strerror[:1].lower()}{e.strerror[1:]}") from None
                    for pid in self.pids():
                        _kill(pid, SIGKILL)
                    time.sleep(0.01)


class V1Cgroup(FsCgroup):
    """Legacy hierarchies only: one directory per v1 mount."""

    def check(self, resources: dict[str, Any] | None) -> None:
        """runc's validator: `unified` needs cgroup v2."""
        if resources and resources.get("unified"):
            from pyrun.cgroups.cgfile import CgroupError
            from pyrun.cgroups.resources_v1 import NO_UNIFIED
            raise CgroupError(NO_UNIFIED)

    def update(self, resources: dict[str, Any] | None) -> None:
        if resources:
            from pyrun.cgroups import resources_v1
            resources_v1.apply(self.controller_dirs(), resources)


class HybridCgroup(V1Cgroup):
    """v1 controllers plus a cgroup2 directory, which holds the controllers
    that have no v1 mount (hugetlb, rdma) and the freezer, OOM source and
    device filter when their v1 controller is missing."""

    def update(self, resources: dict[str, Any] | None) -> None:
        if not resources:
            return
        from pyrun.cgroups import resources_v1
        dirs = self.controller_dirs()
        v2_only = [name for name, key in (("hugetlb", "hugepageLimits"), ("rdma", "rdma"))
                   if resources.get(key) and name not in dirs and name in self._v2_controllers()]
        resources_v1.apply(dirs, resources, skip=v2_only)
        if v2_only:
            from pyrun.cgroups import resources_v2
            for name in v2_only:
                (resources_v2.set_hugetlb if name == "hugetlb" else resources_v2.set_rdma)(self.paths[""], resources)

    def _v2_controllers(self) -> list[str]:
        try:
            with open(os.path.join(self.paths[""], "cgroup.controllers")) as f:
                return f.read().split()
        except OSError:
            return []

    def kill(self, sig: int) -> bool:
        """SIGKILL through cgroup.kill where the kernel has it (atomic, nothing
        escapes by forking), then whatever sits only in a v1 hierarchy."""
        if sig == SIGKILL and _cgroup_kill(self.paths[""]):
            from pyrun.cgroups.stats import all_pids
            for pid in all_pids({k: p for k, p in self.paths.items() if k}):
                _kill(pid, sig)
            return True
        return super().kill(sig)


class V2Cgroup(FsCgroup):
    """Pure cgroup v2: one directory, whose ancestors must enable controllers."""

    _writers = "pyrun.cgroups.resources_v2"

    def create(self, owner: int | None = None) -> None:
        _enable_controllers(os.path.dirname(self.paths[""]))
        super().create(owner)
        if owner is not None:
            from pyrun.cgroups.ownership import delegate
            delegate(self.paths[""], owner)

    def check(self, resources: dict[str, Any] | None) -> None:
        """What runc's validator refuses on v2: an impossible memory+swap or realtime CPU."""
        if not resources:
            return
        from pyrun.cgroups.convert import swap_to_v2
        mem, cpu = resources.get("memory") or {}, resources.get("cpu") or {}
        swap_to_v2(mem.get("swap") or 0, mem.get("limit") or 0)
        if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
            from pyrun.cgroups.cgfile import CgroupError
            from pyrun.cgroups.resources_v2 import NO_REALTIME
            raise CgroupError(NO_REALTIME)

    def update(self, resources: dict[str, Any] | None) -> None:
        if resources:
            from pyrun.cgroups import resources_v2
            resources_v2.apply(self.paths[""], resources)

    def kill(self, sig: int) -> bool:
        if sig == SIGKILL and _cgroup_kill(self.paths[""]):
            return True
        return super().kill(sig)


def _cgroup_kill(path: str) -> bool:
    """cgroup.kill (Linux 5.14): False where the kernel has none."""
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
        return True
    except FileNotFoundError:
        return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _rmdir_tree(path: str) -> None:
    """cgroup directories hold only pseudo-files: remove children first."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _rmdir_tree(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _inherit_cpuset(path: str) -> None:
    """A fresh v1 cpuset is empty and cannot hold tasks: copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        target = os.path.join(path, name)
        with open(target) as f:
            if f.read().strip():
                continue
        parent = os.path.dirname(path)
        _inherit_cpuset(parent) if os.path.exists(os.path.join(parent, name)) else None
        with open(os.path.join(parent, name)) as f:
            value = f.read().strip()
        with open(target, "w") as f:
            f.write(value)


def _enable_controllers(parent: str) -> None:
    """cgroup v2: a controller's files appear in a child only once every
    ancestor lists it in cgroup.subtree_control; enable what each level
    offers, top-down, as runc does.  A level that refuses (it holds
    processes, or is not delegated) is left as it is: the limits that need
    it then fail with the file's name."""
    chain = []
    cur = parent
    while os.path.exists(os.path.join(cur, "cgroup.controllers")):
        chain.append(cur)
        up = os.path.dirname(cur)
        if up == cur:
            break
        cur = up
    for level in reversed(chain):
        try:
            with open(os.path.join(level, "cgroup.controllers")) as f:
                offered = f.read().split()
            with open(os.path.join(level, "cgroup.subtree_control")) as f:
                enabled = set(f.read().split())
        except OSError:
            return
        for name in offered:
            if name in enabled:
                continue
            try:
                with open(os.path.join(level, "cgroup.subtree_control"), "w") as f:
                    f.write("+" + name)
            except OSError:
                pass
