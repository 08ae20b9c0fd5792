"""linux.intelRdt: Intel RDT (cache allocation / memory bandwidth) via resctrl.

`check` runs in `create` before anything exists: the spec requires an error
when no resctrl filesystem is mounted in the runtime's mount namespace.

When resctrl is there, a container gets a CTRL_MON group (a directory):
`closID`, or the container ID when closID is unset (then the group is ours
and `destroy` removes it); the schemata lines are written to it and the
init's pid to its `tasks`.  This part cannot be exercised on hosts without
RDT, so it is kept to the spec's rules and nothing more.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError, PyrunError, strerror

FIELD = "linux.intelRdt"


def resctrl_mountpoint(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _sep, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "resctrl":
                    return left.split()[4].replace("\\040", " ")
    except OSError:
        pass
    return None


def _schemata_lines(cfg: dict[str, Any]) -> list[str]:
    """In the spec's order: l3CacheSchema, memBwSchema, then schemata."""
    lines = [cfg[k] for k in ("l3CacheSchema", "memBwSchema") if cfg.get(k)]
    lines += list(cfg.get("schemata") or [])
    return lines


def check(cfg: dict[str, Any]) -> None:
    """Refuse linux.intelRdt when this host cannot honour it."""
    clos = cfg.get("closID")
    if clos is not None and clos != "/" and (clos in ("", ".", "..") or "/" in clos):
        raise ConfigError(f"{FIELD}.closID: invalid CLOS name {clos!r}")
    for line in _schemata_lines(cfg):
        if "\n" in line:
            raise ConfigError(f"{FIELD}: schemata lines must not contain newlines")
    root = resctrl_mountpoint()
    if root is None:
        raise ConfigError(f"{FIELD}: Intel RDT is requested, but resctrl is not available "
                          "(no resctrl filesystem is mounted)")
    if cfg.get("l3CacheSchema") and not os.path.isdir(os.path.join(root, "info", "L3")):
        raise ConfigError(f"{FIELD}.l3CacheSchema: set, but Intel RDT/CAT is not enabled on this host")
    if cfg.get("memBwSchema") and not os.path.isdir(os.path.join(root, "info", "MB")):
        raise ConfigError(f"{FIELD}.memBwSchema: set, but Intel RDT/MBA is not enabled on this host")


@dataclass
class RdtGroup:
    path: str               # the CTRL_MON group directory
    owned: bool             # created for this container: remove on delete
    mon_path: str | None    # mon_groups/<id>, when enableMonitoring


def apply(cfg: dict[str, Any], container_id: str, pid: int) -> RdtGroup:
    """Create or find the group, write the schemata, move `pid` into it.

    Called by the parent once the init's pid is known (before it is ready)."""
    root = resctrl_mountpoint()
    if root is None:
        raise PyrunError(f"{FIELD}: resctrl is not available (no resctrl filesystem is mounted)")
    clos = cfg.get("closID")
    lines = _schemata_lines(cfg)
    path = root if clos == "/" else os.path.join(root, clos or container_id)
    created = False
    if path != root and (lines or not clos):
        try:
            os.mkdir(path)
            created = True
        except FileExistsError:
            if not clos:
                raise PyrunError(f"{FIELD}: resctrl group {path} already exists") from None
        except OSError as e:
            raise PyrunError(f"{FIELD}: creating resctrl group {path}: {strerror(e.errno)}") from None
    elif not os.path.isdir(path):
        raise PyrunError(f"{FIELD}.closID: no pre-configured resctrl group {path}")
    owned = created and not clos       # a closID group is never removed by us
    group = RdtGroup(path, owned, None)
    try:
        if lines and created:
            _write(root, os.path.join(path, "schemata"), "\n".join(lines) + "\n")
        elif lines:     # a pre-existing closID group must already hold what is asked
            _check_schemata(path, lines)
        _write(root, os.path.join(path, "tasks"), str(pid))
        if cfg.get("enableMonitoring"):
            mon = os.path.join(path, "mon_groups", container_id)
            try:
                os.mkdir(mon)
            except OSError as e:
                raise PyrunError(f"{FIELD}.enableMonitoring: creating {mon}: {strerror(e.errno)}") from None
            group.mon_path = mon
            _write(root, os.path.join(mon, "tasks"), str(pid))
    except BaseException:
        destroy(group)
        raise
    return group


def destroy(group: RdtGroup) -> None:
    """On delete: the MON group always, the CTRL_MON group only if we made it."""
    for path, ours in ((group.mon_path, True), (group.path, group.owned)):
        if path and ours:
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise PyrunError(f"{FIELD}: removing resctrl group {path}: {strerror(e.errno)}") from None


def _write(root: str, path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        detail = ""
        if e.errno == errno.EINVAL and path.endswith("schemata"):
            detail = _last_cmd_status(root)
        raise PyrunError(f"{FIELD}: writing {path}: {strerror(e.errno)}{detail}") from None


def _check_schemata(path: str, lines: list[str]) -> None:
    """An existing closID group must already hold the schemata asked for."""
    try:
        with open(os.path.join(path, "schemata")) as f:
            current = {" ".join(line.split()) for line in f}
    except OSError as e:
        raise PyrunError(f"{FIELD}: reading {path}/schemata: {strerror(e.errno)}") from None
    for line in lines:
        if " ".join(line.split()) not in current:
            raise PyrunError(f"{FIELD}.closID: existing group {path} has a different schemata "
                             f"than {line!r}")


def _last_cmd_status(root: str) -> str:
    """resctrl explains a rejected schemata in info/last_cmd_status."""
    try:
        with open(os.path.join(root, "info", "last_cmd_status")) as f:
            status = f.read().strip()
        return f" ({status})" if status and status != "ok" else ""
    except OSError:
        return ""
