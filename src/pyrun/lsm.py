"""AppArmor profiles and SELinux labels: refused at create when the host has
no such LSM, applied in the init as exec-time transitions.

Both are "on exec" attributes: the init writes them to /proc/self/attr and
the kernel switches the label when the container's process is executed, so
the init's own remaining set-up is not confined by them (runc does the same).

Where mountLabel would apply (only with SELinux on): every filesystem mount
the init makes for the container (tmpfs, mqueue, devpts, ... but not bind
mounts and not proc/sysfs/cgroup, which take no context= option) gets
`context="<label>"` appended to its data; see `mount_data_with_label`.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError, strerror

_APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"

# Filesystems that accept a context= mount option (runc labels every mount
# but these would reject it or ignore it; a bind mount keeps its source's label).
NO_CONTEXT_FSTYPES = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "bind", "securityfs",
                                "selinuxfs", "debugfs", "tracefs", "bpf"})


def apparmor_enabled() -> bool:
    try:
        with open(_APPARMOR_ENABLED) as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def selinux_enabled(mountinfo: str = "/proc/self/mountinfo") -> bool:
    """SELinux is in use when selinuxfs is mounted (what libselinux checks)."""
    try:
        with open(mountinfo) as f:
            for line in f:
                _left, _sep, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "selinuxfs":
                    return True
    except OSError:
        pass
    return False


def check(spec: dict[str, Any]) -> None:
    """In `create`, before anything exists: refuse a label the host cannot apply."""
    process = spec.get("process") or {}
    linux = spec.get("linux") or {}
    profile = process.get("apparmorProfile")
    if profile and not apparmor_enabled():
        raise ConfigError(f"process.apparmorProfile: AppArmor profile {profile!r} is set, "
                          "but AppArmor is not enabled on this host")
    for field, value in (("process.selinuxLabel", process.get("selinuxLabel")),
                         ("linux.mountLabel", linux.get("mountLabel"))):
        if value and not selinux_enabled():
            raise ConfigError(f"{field}: SELinux label {value!r} is set, "
                              "but SELinux is not enabled on this host")
    for field, value in (("process.apparmorProfile", profile),
                         ("process.selinuxLabel", process.get("selinuxLabel")),
                         ("linux.mountLabel", linux.get("mountLabel"))):
        if value and ("\n" in value or "\0" in value):
            raise ConfigError(f"{field}: must be a single line")


def _write_attr(proc_fd: int, paths: tuple[str, ...], value: str, what: str) -> None:
    """Write to the first attr file that exists (the LSM-specific one first),
    through the runtime's procfs fd: the container's /proc/self may be a
    volume that would take the label (CVE-2025-52881).  `paths` are below /proc."""
    from pyrun.linux import procfs
    last: OSError | None = None
    for rel in paths:
        path = "/proc/" + rel
        try:
            fd = procfs.open_file(proc_fd, rel, os.O_WRONLY)
        except FileNotFoundError as e:
            last = e
            continue
        except OSError as e:
            raise OSError(e.errno, f"{what}: open {path}: {strerror(e.errno)}") from None
        try:
            os.write(fd, value.encode())
            return
        except OSError as e:
            raise OSError(e.errno, f"{what}: write {path}: {strerror(e.errno)}") from None
        finally:
            os.close(fd)
    assert last is not None
    raise OSError(last.errno, f"{what}: no {paths[0]} (is the LSM enabled?)")


def apply(process: dict[str, Any], proc_fd: int) -> None:
    """In the init, after pivot_root: request the transition that happens at
    the container process's execve."""
    profile = process.get("apparmorProfile")
    if profile:
        _write_attr(proc_fd, ("self/attr/apparmor/exec", "self/attr/exec"),
                    "exec " + profile, f"process.apparmorProfile {profile!r}")
    label = process.get("selinuxLabel")
    if label:
        _write_attr(proc_fd, ("self/attr/exec",), label, f"process.selinuxLabel {label!r}")


def mount_data_with_label(data: str, fstype: str | None, flags: int, mount_label: str | None) -> str:
    """The mount data for a filesystem mount, with linux.mountLabel added as
    `context="<label>"` (for rootfs/mounts.py to call).  `check` has already
    refused a mountLabel on a host without SELinux, so none is checked here.

    Bind mounts and remounts keep what they have; so do filesystems that take
    no context= option."""
    MS_REMOUNT, MS_BIND = 0x20, 0x1000
    if not mount_label or flags & (MS_REMOUNT | MS_BIND) or (fstype or "") in NO_CONTEXT_FSTYPES:
        return data
    option = f'context="{mount_label}"'
    return f"{data},{option}" if data else option
