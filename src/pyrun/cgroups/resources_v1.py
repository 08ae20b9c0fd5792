"""`linux.resources` written to cgroup v1 controllers (also used on hybrid hosts).

The OCI fields are v1 values, so this is mostly a file per field; what needs
care is ordering (memory vs memory+swap, cfs period vs quota) and refusing
what the host cannot do with an error that names the file.
"""
from __future__ import annotations

TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any, Callable

from pyrun.cgroups import convert
from pyrun.cgroups.cgfile import CgroupError, check_usage, exists, rdma_lines, read, write

NO_UNIFIED = "invalid configuration: cannot use unified on cgroup v1"


def apply(dirs: dict[str, str], res: dict[str, Any], skip: list[str] | tuple[str, ...] = ()) -> None:
    """`dirs`: controller name -> the container's directory in its hierarchy.
    `skip`: controllers set elsewhere (a hybrid host's cgroup2 directory
    holds hugetlb and rdma when they have no v1 mount: fs.HybridCgroup)."""
    if res.get("unified"):
        raise CgroupError(NO_UNIFIED)
    steps: list[tuple[str, Callable[[str, dict[str, Any]], None], bool]] = [
        ("cpuset", _cpuset, bool((res.get("cpu") or {}).get("cpus") or (res.get("cpu") or {}).get("mems"))),
        ("cpu", _cpu, _cpu_set(res.get("cpu") or {})),
        ("memory", _memory, _memory_set(res.get("memory") or {})),
        ("pids", _pids, convert.pids_max((res.get("pids") or {}).get("limit")) is not None),
        ("blkio", _blkio, any((res.get("blockIO") or {}).values())),
        ("hugetlb", _hugetlb, bool(res.get("hugepageLimits"))),
        ("net_cls", _net_cls, bool((res.get("network") or {}).get("classID"))),
        ("net_prio", _net_prio, bool((res.get("network") or {}).get("priorities"))),
        ("rdma", _rdma, bool(res.get("rdma"))),
    ]
    for name, setter, wanted in steps:
        if not wanted or name in skip:
            continue
        directory = dirs.get(name)
        if directory is None:
            raise CgroupError(f"cannot set {name} limit: container could not join or create cgroup")
        setter(directory, res)


def _cpuset(d: str, res: dict[str, Any]) -> None:
    cpu = res.get("cpu") or {}
    if cpu.get("cpus"):
        write(d, "cpuset.cpus", cpu["cpus"])
    if cpu.get("mems"):
        write(d, "cpuset.mems", cpu["mems"])


def _cpu_set(cpu: dict[str, Any]) -> bool:
    keys = ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod", "idle")
    return any(cpu.get(k) is not None for k in keys)


def _cpu(d: str, res: dict[str, Any]) -> None:
    cpu = res.get("cpu") or {}
    shares = cpu.get("shares") or 0
    if shares:
        write(d, "cpu.shares", str(shares))
        got = int(read(d, "cpu.shares"))     # the kernel clamps instead of refusing
        if shares > got:
            raise CgroupError(f"the maximum allowed cpu-shares is {got}")
        if shares < got:
            raise CgroupError(f"the minimum allowed cpu-shares is {got}")
    # a shorter period can break the parent's quota until the new quota is in
    _period_and_budget(d, "cpu.cfs_period_us", cpu.get("period") or 0, "cpu.cfs_quota_us", cpu.get("quota") or 0)
    if cpu.get("burst") is not None:
        write(d, "cpu.cfs_burst_us", str(cpu["burst"]))
    if cpu.get("idle") is not None:
        write(d, "cpu.idle", str(cpu["idle"]))
    # the rt period after the runtime when the current runtime does not fit the
    # new, shorter period (runtime 600001 > period 10000 is EINVAL), as runc
    _period_and_budget(d, "cpu.rt_period_us", cpu.get("realtimePeriod") or 0,
                       "cpu.rt_runtime_us", cpu.get("realtimeRuntime") or 0)


def _period_and_budget(d: str, period_file: str, period: int, budget_file: str, budget: int) -> None:
    """The period first; if the kernel refuses it against the budget now in
    place, write the new budget and then the period again."""
    retry_period = False
    if period:
        try:
            write(d, period_file, str(period))
        except CgroupError:
            if not budget:
                raise
            retry_period = True
    if budget:
        write(d, budget_file, str(budget))
        if retry_period:
            write(d, period_file, str(period))


def _memory_set(mem: dict[str, Any]) -> bool:
    return any(mem.get(k) not in (None, 0) for k in ("limit", "reservation", "swap", "kernelTCP")) \
        or any(mem.get(k) is not None for k in ("swappiness", "disableOOMKiller", "useHierarchy"))


def _memory(d: str, res: dict[str, Any]) -> None:
    mem = res.get("memory") or {}
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    if limit == -1 and swap == 0:
        swap = -1          # "unlimited memory" means unlimited memory+swap too
    if mem.get("checkBeforeUpdate") and limit > 0:
        check_usage(int(read(d, "memory.usage_in_bytes")), limit)
    if limit and swap:
        # the kernel wants memory <= memory+swap at every step: order the writes
        current = int(read(d, "memory.limit_in_bytes"))
        if swap == -1 or current < swap:
            _write_swap(d, swap)
            _write_limit(d, limit)
        else:
            _write_limit(d, limit)
            _write_swap(d, swap)
    else:
        if limit:
            _write_limit(d, limit)
        if swap:
            _write_swap(d, swap)
    if mem.get("reservation"):
        write(d, "memory.soft_limit_in_bytes", str(mem["reservation"]))
    if mem.get("kernelTCP"):
        write(d, "memory.kmem.tcp.limit_in_bytes", str(mem["kernelTCP"]))
    if mem.get("disableOOMKiller"):
        write(d, "memory.oom_control", "1")
    swappiness = mem.get("swappiness")
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise CgroupError(f"invalid memory swappiness value: {swappiness} (valid range is 0-100)")
        write(d, "memory.swappiness", str(swappiness))
    if mem.get("useHierarchy") is not None:
        write(d, "memory.use_hierarchy", "1" if mem["useHierarchy"] else "0")


def _write_limit(d: str, limit: int) -> None:
    try:
        write(d, "memory.limit_in_bytes", str(limit))
    except CgroupError as e:
        if "device or resource busy" not in str(e):
            raise
        usage, peak = read(d, "memory.usage_in_bytes"), read(d, "memory.max_usage_in_bytes")
        raise CgroupError(f"unable to set memory limit to {limit} (current usage: {usage}, "
                          f"peak usage: {peak})") from None


def _write_swap(d: str, swap: int) -> None:
    write(d, "memory.memsw.limit_in_bytes", str(swap))


def _pids(d: str, res: dict[str, Any]) -> None:
    value = convert.pids_max(res["pids"]["limit"])
    if value is not None:           # apply() calls this only with a limit given
        write(d, "pids.max", value)


def _blkio(d: str, res: dict[str, Any]) -> None:
    bio = res.get("blockIO") or {}
    weight_file = "blkio.weight"
    if not exists(d, weight_file) and exists(d, "blkio.bfq.weight"):
        weight_file = "blkio.bfq.weight"
    if bio.get("weight"):
        write(d, weight_file, str(bio["weight"]))
    if bio.get("leafWeight"):
        write(d, "blkio.leaf_weight", str(bio["leafWeight"]))
    for wd in bio.get("weightDevice") or []:
        if wd.get("weight"):
            write(d, weight_file + "_device", f"{convert.device(wd)} {wd['weight']}")
        if wd.get("leafWeight"):
            write(d, "blkio.leaf_weight_device", f"{convert.device(wd)} {wd['leafWeight']}")
    for key, name in (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
                      ("throttleReadIOPSDevice", "read_iops_device"), ("throttleWriteIOPSDevice", "write_iops_device")):
        for td in bio.get(key) or []:
            write(d, f"blkio.throttle.{name}", f"{convert.device(td)} {td['rate']}")


def _hugetlb(d: str, res: dict[str, Any]) -> None:
    for hp in res.get("hugepageLimits") or []:
        size = convert.hugepage_size(hp["pageSize"])
        write(d, f"hugetlb.{size}.limit_in_bytes", str(hp["limit"]))
        if exists(d, f"hugetlb.{size}.rsvd.limit_in_bytes"):
            write(d, f"hugetlb.{size}.rsvd.limit_in_bytes", str(hp["limit"]))


def _net_cls(d: str, res: dict[str, Any]) -> None:
    write(d, "net_cls.classid", str(res["network"]["classID"]))


def _net_prio(d: str, res: dict[str, Any]) -> None:
    for prio in res["network"]["priorities"]:
        write(d, "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}")


def _rdma(d: str, res: dict[str, Any]) -> None:
    for line in rdma_lines(res.get("rdma") or {}):
        write(d, "rdma.max", line)
