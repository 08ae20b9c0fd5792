"""The OCI resources are cgroup v1 values: runc's conversions to v2 files.

Kept apart from the writers so `update` and the tests compute exactly the
value a v2 host will show.
"""
from __future__ import annotations

import math

from pyrun.cgroups.cgfile import CgroupError


def cpu_shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], 1024 -> 100 (the
    quadratic fit of current runc/crun; 0 means unset)."""
    if shares == 0:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    return int(math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0)))


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000], linearly (0 = unset)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int, memory: int) -> int:
    """OCI swap is memory+swap; memory.swap.max is swap alone.  -1 = max, 0 = unset."""
    if memory == -1 and swap == 0:
        return -1
    if swap in (-1, 0) or memory == -1:
        return swap
    if memory == 0:
        raise CgroupError("unable to set swap limit without memory limit")
    if memory < 0:
        raise CgroupError(f"invalid memory value: {memory}")
    if swap < memory:
        raise CgroupError("memory+swap limit should be >= memory limit")
    return swap - memory


def v2_number(value: int) -> str:
    """v2 .max/.low/.high files: -1 is "max", 0 is "leave alone" ("")."""
    if value == 0:
        return ""
    return "max" if value == -1 else str(value)


def pids_max(limit: int | None) -> str | None:
    """OCI pids.limit -> pids.max as runc >= 1.2 writes it: None (absent or
    null) leaves the file alone, < 0 is "max", and 0 is "1", because systemd
    refuses TasksMax=0 and runc maps 0 the same way for every driver (so the
    limit does not depend on the cgroup manager)."""
    if limit is None:
        return None
    if limit < 0:
        return "max"
    return str(max(limit, 1))


def hugepage_size(page_size: str) -> str:
    """"2MB"/"2M"/"2048KB" as the kernel names the files ("2MB", "1GB", "64KB")."""
    units = {"KB": 1, "MB": 1 << 10, "GB": 1 << 20}
    text = page_size.upper().rstrip("B") + "B"
    num, unit = text[:-2], text[-2:]
    if unit not in units or not num.isdigit():
        raise CgroupError(f"invalid hugepage size {page_size!r}")
    kb = int(num) * units[unit]
    if kb >= 1 << 20 and kb % (1 << 20) == 0:
        return f"{kb >> 20}GB"
    if kb >= 1 << 10 and kb % (1 << 10) == 0:
        return f"{kb >> 10}MB"
    return f"{kb}KB"


def device(entry: dict) -> str:
    return f"{entry['major']}:{entry['minor']}"
