"""/dev inside the container: device nodes, the ptmx link and the fd links."""
from __future__ import annotations

import errno
import os
import stat
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.linux import syscalls as s
from pyrun.rootfs.paths import ensure_path, fd_path, parts_of

# runtime-spec "Default Devices" (config-linux.md); /dev/console and
# /dev/ptmx are handled by the console and devpts set-up.
DEFAULT_DEVICES: list[dict[str, Any]] = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0},
]

# runtime-linux.md "Dev symbolic links"
DEV_SYMLINKS = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]

_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def needs_dev_setup(mounts: list[dict[str, Any]]) -> bool:
    """runc skips device creation when /dev itself is bind-mounted from the host."""
    for m in mounts:
        if "/".join(parts_of(m.get("destination", ""))) == "dev":
            opts = m.get("options") or []
            if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
                return False
    return True


def create_devices(root_fd: int, devices: list[dict[str, Any]], in_userns: bool) -> None:
    seen: set[str] = set()
    for dev in devices:
        path = "/" + "/".join(parts_of(dev["path"]))
        if path in seen:
            continue
        seen.add(path)
        if in_userns:
            _bind_host_device(root_fd, path)
        else:
            _mknod(root_fd, path, dev)


def _mknod(root_fd: int, path: str, dev: dict[str, Any]) -> None:
    parent_path, name = os.path.split(path)
    parent = ensure_path(root_fd, parent_path, directory=True)
    try:
        kind = _TYPES[dev.get("type", "c")]
        mode = dev.get("fileMode", 0o666) & 0o7777
        rdev = os.makedev(dev.get("major", 0), dev.get("minor", 0)) if kind != stat.S_IFIFO else 0
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if stat.S_IFMT(existing.st_mode) == kind and existing.st_rdev == rdev:
                return
            # config-linux.md: a file at path that does not match the device MUST be an error
            raise FileExistsError(errno.EEXIST, "a file that is not the requested device exists", path)
        os.mknod(name, kind | mode, rdev, dir_fd=parent)
        os.chmod(name, mode, dir_fd=parent)   # just made by mknod: not a link
        os.chown(name, dev.get("uid", 0), dev.get("gid", 0), dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def _bind_host_device(root_fd: int, path: str) -> None:
    """In a user namespace mknod is refused: bind the host's node instead."""
    src = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        target = ensure_path(root_fd, path, directory=False)
        try:
            s.mount(fd_path(src), fd_path(target), None, s.MS_BIND)
        finally:
            os.close(target)
    finally:
        os.close(src)


def create_symlinks(root_fd: int, has_ptmx_device: bool) -> None:
    dev = ensure_path(root_fd, "/dev", directory=True)
    try:
        links = list(DEV_SYMLINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "/dev/core"))
        if not has_ptmx_device:
            try:
                os.unlink("ptmx", dir_fd=dev)
            except FileNotFoundError:
                pass
            links.append(("pts/ptmx", "/dev/ptmx"))
        for target, link in links:
            try:
                os.symlink(target, os.path.basename(link), dir_fd=dev)
            except FileExistsError:
                pass
    finally:
        os.close(dev)


def ensure_shm_dir(root_fd: int) -> None:
    os.close(ensure_path(root_fd, "/dev/shm", directory=True, mode=0o1777))

