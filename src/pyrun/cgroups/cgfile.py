"""Reading and writing cgroup control files with runc's error wording.

Callers (and people) need to know which file refused which value, so every
failure names both, the way runc's cgroups.WriteFile does.
"""
from __future__ import annotations

import os

from pyrun.errors import PyrunError, strerror

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class CgroupError(PyrunError):
    """A limit the host refused, or a controller the container has no directory for."""


# `pyrun explain` and PYRUN_TRACE: every write as {"file", "value"}; DRY
# records without writing, and reads the files of the nearest existing
# ancestor (explain makes no directory: the files are the same in a hierarchy).
RECORD: list[dict[str, str]] | None = None
DRY = False


def _existing(directory: str) -> str:
    while DRY and not os.path.isdir(directory) and directory not in ("", "/"):
        directory = os.path.dirname(directory)
    return directory


def write(directory: str, name: str, value: str) -> None:
    path = os.path.join(directory, name)
    if RECORD is not None:
        RECORD.append({"file": path, "value": value})
        if DRY:
            return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"open {path}: {strerror(e.errno)}") from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise CgroupError(f'failed to write "{value}": write {path}: {strerror(e.errno)}') from None
    finally:
        os.close(fd)


def read(directory: str, name: str) -> str:
    if DRY and RECORD:      # a read-back of what was just "written" (cpu.shares): the value
        path = os.path.join(directory, name)
        written = [w["value"] for w in RECORD if w["file"] == path]
        if written:
            return written[-1]
    with open(os.path.join(_existing(directory), name)) as f:
        return f.read().strip()


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(_existing(directory), name))


# --- shared by the v1 and v2 writers -------------------------------------------------

def check_usage(usage: int, limit: int) -> None:
    """checkBeforeUpdate: refuse a limit below what the container already uses."""
    if usage >= limit:
        raise CgroupError(f"rejecting memory limit {limit} below current usage {usage}")


def rdma_lines(rdma: dict[str, Any]) -> list[str]:
    out = []
    for dev, lim in sorted(rdma.items()):
        parts = [dev]
        if lim.get("hcaHandles") is not None:
            parts.append(f"hca_handle={lim['hcaHandles']}")
        if lim.get("hcaObjects") is not None:
            parts.append(f"hca_object={lim['hcaObjects']}")
        if len(parts) > 1:
            out.append(" ".join(parts))
    return out
