"""`linux.resources` written to a cgroup v2 directory, with runc's conversions
from the v1-shaped OCI values (shares -> cpu.weight, blkio weight -> io.weight,
memory+swap -> memory.swap.max, ...).

Fields v2 has no file for follow runc: kernel memory, kernelTCP, swappiness,
disableOOMKiller, leafWeight and network are ignored; realtime CPU is refused.
"""
from __future__ import annotations

TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups import convert
from pyrun.cgroups.cgfile import CgroupError, check_usage, exists, rdma_lines, read, write

NO_REALTIME = "realtime CPU limits (cpu.realtimeRuntime, cpu.realtimePeriod) are not supported on cgroup v2"


def apply(d: str, res: dict[str, Any]) -> None:
    _pids(d, res.get("pids") or {})
    _memory(d, res.get("memory") or {})
    _io(d, res.get("blockIO") or {})
    _cpu(d, res.get("cpu") or {})
    _cpuset(d, res.get("cpu") or {})
    set_hugetlb(d, res)
    set_rdma(d, res)
    _unified(d, res.get("unified") or {})


def _pids(d: str, pids: dict[str, Any]) -> None:
    value = convert.pids_max(pids.get("limit"))
    if value is not None:
        write(d, "pids.max", value)


def _memory(d: str, mem: dict[str, Any]) -> None:
    limit, swap, reservation = mem.get("limit") or 0, mem.get("swap") or 0, mem.get("reservation") or 0
    if not (limit or swap or reservation):
        return
    if mem.get("checkBeforeUpdate") and limit > 0:
        check_usage(int(read(d, "memory.current")), limit)
    swap_v2 = convert.swap_to_v2(swap, limit)
    text = convert.v2_number(swap_v2)
    if not text and swap_v2 == 0 and swap > 0:
        text = "0"                  # memory == memory+swap: no swap at all
    if text:
        if exists(d, "memory.swap.max"):
            write(d, "memory.swap.max", text)
        elif swap_v2 > 0:      # no swap accounting: only "no limit" and "no swap" are moot
            write(d, "memory.swap.max", text)
    if limit:
        write(d, "memory.max", convert.v2_number(limit))
    if reservation:
        write(d, "memory.low", convert.v2_number(reservation))


def _io(d: str, bio: dict[str, Any]) -> None:
    if bio.get("weight"):
        if exists(d, "io.bfq.weight"):
            write(d, "io.bfq.weight", str(bio["weight"]))
        else:
            write(d, "io.weight", str(convert.blkio_weight_to_io_weight(bio["weight"])))
    for wd in bio.get("weightDevice") or []:
        if wd.get("weight"):
            write(d, "io.bfq.weight", f"{convert.device(wd)} {wd['weight']}")
    for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for td in bio.get(key) or []:
            rate = td["rate"]
            write(d, "io.max", f"{convert.device(td)} {name}={rate if rate else 'max'}")


def _cpu(d: str, cpu: dict[str, Any]) -> None:
    if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
        raise CgroupError(NO_REALTIME)
    if cpu.get("idle") is not None:
        write(d, "cpu.idle", str(cpu["idle"]))
    weight = convert.cpu_shares_to_weight(cpu.get("shares") or 0)
    if weight:
        write(d, "cpu.weight", str(weight))
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    if quota or period:
        text = str(quota) if quota > 0 else "max"
        write(d, "cpu.max", f"{text} {period or 100000}")
    if cpu.get("burst") is not None:
        write(d, "cpu.max.burst", str(cpu["burst"]))


def _cpuset(d: str, cpu: dict[str, Any]) -> None:
    if cpu.get("cpus"):
        write(d, "cpuset.cpus", cpu["cpus"])
    if cpu.get("mems"):
        write(d, "cpuset.mems", cpu["mems"])


def set_hugetlb(d: str, res: dict[str, Any]) -> None:
    for hp in res.get("hugepageLimits") or []:
        size = convert.hugepage_size(hp["pageSize"])
        write(d, f"hugetlb.{size}.max", str(hp["limit"]))
        if exists(d, f"hugetlb.{size}.rsvd.max"):
            write(d, f"hugetlb.{size}.rsvd.max", str(hp["limit"]))


def set_rdma(d: str, res: dict[str, Any]) -> None:
    for line in rdma_lines(res.get("rdma") or {}):
        write(d, "rdma.max", line)


def _unified(d: str, unified: dict[str, str]) -> None:
    for key, value in unified.items():
        if "/" in key:
            raise CgroupError(f"unified resource {key!r} must be a file name (no slashes)")
        if not exists(d, key):
            controller, dot, _ = key.partition(".")
            if not dot:
                raise CgroupError(f"unified resource {key!r} must be in the form CONTROLLER.PARAMETER")
            if controller != "cgroup" and controller not in read(d, "cgroup.controllers").split():
                raise CgroupError(f"unified resource {key!r} can't be set: controller {controller!r} not available")
        try:
            write(d, key, value)
        except CgroupError as e:
            raise CgroupError(f"unable to set unified resource {key!r}: {e}") from None
