"""The one door into cgroups/: which `Cgroup` (base.py) a container has.

Everything outside cgroups/ imports only this module, holds a `Cgroup` and
never learns which kind it is: cgroupfs v1, v2 or hybrid (fs.py), the systemd driver (systemd.py), or
the null cgroup of a rootless container without a delegated cgroup
(null.py).  `new` makes one for `create`; `load` rebuilds it from what
`record` put in state.json.  Only this module is imported by the light
commands (`state`, `list`, `start`), so it imports nothing but the
interface and the error type; an implementation is imported once chosen.
"""
from __future__ import annotations

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups.base import Cgroup
from pyrun.cgroups.cgfile import CgroupError

__all__ = ["Cgroup", "CgroupError", "new", "load", "planned", "of_process", "record_writes", "stop_recording"]


def new(spec: dict[str, Any], container_id: str, rootless_flag: str = "false",
        systemd: bool = False) -> Cgroup:
    """`create`'s cgroup, made and ready to join (devices rules in place):
    the systemd driver with --systemd-cgroup, cgroupfs otherwise, or the
    null cgroup when rootless without a writable cgroup."""
    if systemd:
        from pyrun.cgroups import systemd as driver
        return driver.new(spec, container_id, rootless_flag)
    from pyrun.cgroups import fs
    return fs.new(spec, container_id, rootless_flag)


def load(state: dict[str, Any]) -> Cgroup:
    """The cgroup `record` described (state.json or the pending file)."""
    if state.get("cgroup_manager") == "systemd":
        from pyrun.cgroups import systemd as driver
        return driver.load(state)
    paths = state.get("cgroup_paths")
    if not paths or not isinstance(paths, dict):
        from pyrun.cgroups.null import NullCgroup
        return NullCgroup()
    from pyrun.cgroups import fs
    return fs.from_paths(paths)


def planned(spec: dict[str, Any], container_id: str, rootless_flag: str = "false") -> tuple[Cgroup, str | None]:
    """The cgroup `new` would make (cgroupfs), nothing made: `pyrun explain`'s,
    with the warning create would print (rootless without a cgroup) or None."""
    from pyrun.cgroups import fs
    return fs.planned(spec, container_id, rootless_flag)


def of_process(pid: int) -> Cgroup:
    """The cgroup a running process is in (`pyrun audit`: what is, not what was recorded)."""
    from pyrun.cgroups import fs
    return fs.of_process(pid)


def record_writes(dry: bool = False) -> list[dict[str, str]]:
    """From now on every limit file write is appended, as {"file", "value"},
    to the list returned (PYRUN_TRACE); `dry`: recorded, not written (explain)."""
    from pyrun.cgroups import cgfile
    cgfile.RECORD, cgfile.DRY = [], dry
    return cgfile.RECORD


def stop_recording() -> None:
    from pyrun.cgroups import cgfile
    cgfile.RECORD, cgfile.DRY = None, False
