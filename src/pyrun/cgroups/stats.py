"""What a container's cgroups hold and use: pids for `ps`/`kill --all`,
usage for `events`.

Stats are read straight from the cgroup files (v1 controllers where the
host has them, as runc's fs manager does on v1 and hybrid hosts; the
unified files on pure v2) and shaped as runc's `types.Stats` JSON, with Go's
`omitempty` applied where runc's struct tags have it, since callers decode
that exact shape.
"""
from __future__ import annotations

import errno
import os
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

MAX_U64 = 2 ** 64 - 1
_NS_PER_TICK = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)


# --- membership ---------------------------------------------------------------

def all_pids(paths: dict[str, str]) -> list[int]:
    """Every process in the container's cgroups and their sub-cgroups (an
    `exec --cgroup` may have made some), from every hierarchy."""
    found: set[int] = set()
    for top in paths.values():
        for dirpath, _dirs, _files in os.walk(top):
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    found.update(int(x) for x in f.read().split())
            except OSError as e:
                # gone, or going: a cgroup being removed (systemd stopping a
                # scope as its last process exits) answers ENODEV
                if e.errno not in (errno.ENOENT, errno.ENODEV, errno.ESRCH):
                    raise
    return sorted(found)


# --- file readers ---------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _int(path: str) -> int:
    """A single-value file; "max" (v2 unlimited) is MAX_U64, a missing file 0."""
    text = _read(path)
    if text is None or not text.strip():
        return 0
    value = text.strip()
    return MAX_U64 if value == "max" else int(value)


def _keyed(path: str) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _ranges(text: str | None) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]"""
    out: list[int] = []
    for part in (text or "").strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _omit(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Go's omitempty for the named keys."""
    return {k: v for k, v in d.items() if k not in keys or v not in (0, None, "", [], {})}


def _psi(path: str) -> dict[str, Any] | None:
    text = _read(path)
    if text is None:
        return None
    out: dict[str, Any] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        values = dict(f.split("=", 1) for f in fields)
        out[kind] = {"avg10": float(values.get("avg10", 0)), "avg60": float(values.get("avg60", 0)),
                     "avg300": float(values.get("avg300", 0)), "total": int(values.get("total", 0))}
    for kind in ("some", "full"):
        out.setdefault(kind, {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0})
    return out


# --- the stats ------------------------------------------------------------------

class _Dirs:
    """Where each controller's files are: a v1 hierarchy, else the v2 dir."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self.v2 = paths.get("")
        self.pure_v2 = set(paths) == {""}

    def v1(self, controller: str) -> str | None:
        for key, path in self.paths.items():
            if controller in key.split(","):
                return path
        return None


def collect(paths: dict[str, str]) -> dict[str, Any]:
    """runc's `types.Stats` for the container's cgroups."""
    d = _Dirs(paths)
    return {
        "cpu": _cpu(d),
        "cpuset": _cpuset(d),
        "memory": _memory(d),
        "pids": _pids(d),
        "blkio": _blkio(d),
        "hugetlb": _hugetlb(d),
        "intel_rdt": {},
        "network_interfaces": None,
    }


def _cpu(d: _Dirs) -> dict[str, Any]:
    acct, cpu = d.v1("cpuacct"), d.v1("cpu")
    usage: dict[str, Any] = {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                             "kernel": 0, "user": 0}
    throttling = {"periods": 0, "throttledPeriods": 0, "throttledTime": 0}
    psi = None
    if acct is not None:
        usage["total"] = _int(os.path.join(acct, "cpuacct.usage"))
        for key, name in (("percpu", "cpuacct.usage_percpu"), ("percpu_kernel", "cpuacct.usage_percpu_sys"),
                          ("percpu_user", "cpuacct.usage_percpu_user")):
            usage[key] = [int(x) for x in (_read(os.path.join(acct, name)) or "").split()]
        ticks = _keyed(os.path.join(acct, "cpuacct.stat"))
        usage["kernel"] = ticks.get("system", 0) * _NS_PER_TICK
        usage["user"] = ticks.get("user", 0) * _NS_PER_TICK
    if cpu is not None:
        st = _keyed(os.path.join(cpu, "cpu.stat"))
        throttling = {"periods": st.get("nr_periods", 0), "throttledPeriods": st.get("nr_throttled", 0),
                      "throttledTime": st.get("throttled_time", 0)}
    if acct is None and d.v2:
        st = _keyed(os.path.join(d.v2, "cpu.stat"))     # usage_usec is there even without the cpu controller
        usage["total"] = st.get("usage_usec", 0) * 1000
        usage["kernel"] = st.get("system_usec", 0) * 1000
        usage["user"] = st.get("user_usec", 0) * 1000
        if cpu is None and "nr_periods" in st:
            throttling = {"periods": st["nr_periods"], "throttledPeriods": st.get("nr_throttled", 0),
                          "throttledTime": st.get("throttled_usec", 0) * 1000}
    if d.pure_v2:
        psi = _psi(os.path.join(d.v2, "cpu.pressure"))
    out: dict[str, Any] = {"usage": _omit(usage, "total", "percpu", "percpu_kernel", "percpu_user"),
                           "throttling": _omit(throttling, "periods", "throttledPeriods", "throttledTime")}
    if psi is not None:
        out["psi"] = psi
    return out


def _cpuset(d: _Dirs) -> dict[str, Any]:
    base = d.v1("cpuset") or (d.v2 if d.pure_v2 else None)
    out: dict[str, Any] = {"cpus": [], "cpu_exclusive": 0, "mems": [], "mem_hardwall": 0, "mem_exclusive": 0,
                           "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                           "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0}
    if base is not None:
        for key in ("cpus", "mems"):     # v2 leaves cpuset.cpus empty unless set: use the effective one
            out[key] = _ranges((_read(os.path.join(base, f"cpuset.{key}")) or "").strip() or
                               _read(os.path.join(base, f"cpuset.{key}.effective")))
        if not d.pure_v2:
            for key in list(out):
                if key not in ("cpus", "mems"):
                    out[key] = _int(os.path.join(base, "cpuset." + key))
    return _omit(out, "cpus", "mems")


def _entry(limit: int, usage: int, max_usage: int, failcnt: int) -> dict[str, Any]:
    return _omit({"limit": limit, "usage": usage, "max": max_usage, "failcnt": failcnt}, "usage", "max")


def _memory(d: _Dirs) -> dict[str, Any]:
    v1 = d.v1("memory")
    out: dict[str, Any] = {"cache": 0}
    if v1 is not None:
        f = lambda name: _int(os.path.join(v1, f"memory.{name}"))  # noqa: E731
        raw = _keyed(os.path.join(v1, "memory.stat"))
        out["cache"] = raw.get("cache", 0)
        for key, prefix in (("usage", ""), ("swap", "memsw."), ("kernel", "kmem."), ("kernelTCP", "kmem.tcp.")):
            out[key] = _entry(f(prefix + "limit_in_bytes"), f(prefix + "usage_in_bytes"),
                              f(prefix + "max_usage_in_bytes"), f(prefix + "failcnt"))
        out["raw"] = raw
    elif d.pure_v2:
        f = lambda name: _int(os.path.join(d.v2, f"memory.{name}"))  # noqa: E731
        raw = _keyed(os.path.join(d.v2, "memory.stat"))
        events = _keyed(os.path.join(d.v2, "memory.events"))
        usage, limit = f("current"), f("max")
        swap_usage, swap_limit = f("swap.current"), f("swap.max")
        out["cache"] = raw.get("file", 0)
        out["usage"] = _entry(limit, usage, f("peak"), events.get("max", 0))
        # as runc: v2 swap is reported as memory+swap, the way v1's memsw is
        out["swap"] = _entry(swap_limit if swap_limit == MAX_U64 or limit == MAX_U64 else swap_limit + limit,
                             swap_usage + usage, 0, _keyed(os.path.join(d.v2, "memory.swap.events")).get("max", 0))
        out["kernel"] = _entry(0, 0, 0, 0)
        out["kernelTCP"] = _entry(0, 0, 0, 0)
        out["raw"] = raw
        psi = _psi(os.path.join(d.v2, "memory.pressure"))
        if psi is not None:
            out["psi"] = psi
    for key in ("usage", "swap", "kernel", "kernelTCP"):
        out.setdefault(key, _entry(0, 0, 0, 0))
    return _omit(out, "cache", "raw")


def _pids(d: _Dirs) -> dict[str, Any]:
    base = d.v1("pids") or (d.v2 if d.pure_v2 else None)
    if base is None:
        return {}
    limit = _int(os.path.join(base, "pids.max"))
    return _omit({"current": _int(os.path.join(base, "pids.current")),
                  "limit": 0 if limit == MAX_U64 else limit}, "current", "limit")


def _blkio_v1(path: str) -> list[dict[str, Any]]:
    out = []
    for line in (_read(path) or "").splitlines():
        fields = line.split()
        if len(fields) == 3 and ":" in fields[0]:
            major, minor = fields[0].split(":")
            out.append(_omit({"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])},
                             "major", "minor", "op", "value"))
    return out


def _blkio(d: _Dirs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    v1 = d.v1("blkio")
    if v1 is not None:
        # the CFQ/BFQ files when the scheduler has them, else the throttle ones (as runc)
        for key, names in (("ioServiceBytesRecursive", ("blkio.io_service_bytes_recursive",
                                                        "blkio.bfq.io_service_bytes_recursive",
                                                        "blkio.throttle.io_service_bytes_recursive")),
                           ("ioServicedRecursive", ("blkio.io_serviced_recursive", "blkio.bfq.io_serviced_recursive",
                                                    "blkio.throttle.io_serviced_recursive"))):
            for name in names:
                if os.path.exists(os.path.join(v1, name)):
                    out[key] = _blkio_v1(os.path.join(v1, name))
                    break
    elif d.pure_v2:
        byte_rows, io_rows = [], []
        for line in (_read(os.path.join(d.v2, "io.stat")) or "").splitlines():
            dev, *fields = line.split()
            major, minor = (int(x) for x in dev.split(":"))
            values = {k: int(v) for k, v in (f.split("=", 1) for f in fields)}
            for op, bkey, ikey in (("Read", "rbytes", "rios"), ("Write", "wbytes", "wios")):
                byte_rows.append(_omit({"major": major, "minor": minor, "op": op, "value": values.get(bkey, 0)},
                                       "major", "minor", "op", "value"))
                io_rows.append(_omit({"major": major, "minor": minor, "op": op, "value": values.get(ikey, 0)},
                                     "major", "minor", "op", "value"))
        out = {"ioServiceBytesRecursive": byte_rows, "ioServicedRecursive": io_rows}
        psi = _psi(os.path.join(d.v2, "io.pressure"))
        if psi is not None:
            out["psi"] = psi
    return _omit(out, "ioServiceBytesRecursive", "ioServicedRecursive")


def _hugetlb(d: _Dirs) -> dict[str, Any]:
    """Per page size; on hybrid hosts hugetlb may live in the cgroup2 tree."""
    base = d.v1("hugetlb")
    v1 = base is not None
    base = base or d.v2
    out: dict[str, Any] = {}
    if base is None:
        return out
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return out
    for name in sorted(names):
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "hugetlb" or parts[2] != ("usage_in_bytes" if v1 else "current"):
            continue
        size = parts[1]
        if v1:
            entry = {"usage": _int(os.path.join(base, name)),
                     "max": _int(os.path.join(base, f"hugetlb.{size}.max_usage_in_bytes")),
                     "failcnt": _int(os.path.join(base, f"hugetlb.{size}.failcnt"))}
        else:
            entry = {"usage": _int(os.path.join(base, name)),
                     "max": 0,
                     "failcnt": _keyed(os.path.join(base, f"hugetlb.{size}.events")).get("max", 0)}
        out[size] = _omit(entry, "usage", "max")
    return out
