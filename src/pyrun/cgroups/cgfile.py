"""Reading and writing cgroup control files with runc's error wording.

Callers (and people) need to know which file refused which value, so every
failure names both, the way runc's cgroups.WriteFile does.
"""
from __future__ import annotations

import os

from pyrun.errors import PyrunError, strerror


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
