"""Resolve mount targets inside the rootfs without ever leaving it.

Every lookup goes through openat2(RESOLVE_IN_ROOT): symlinks and `..` are
resolved as if the rootfs were `/`, so a hostile image cannot point a mount
at the host (CVE-2021-30465 class).  Missing components are created one at a
time below an already-resolved parent, and the caller mounts onto the
returned O_PATH fd through /proc/self/fd, so nothing can be swapped between
check and use.
"""
from __future__ import annotations

import errno
import os

from pyrun.linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def parts_of(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def open_in_root(root_fd: int, path: str, directory: bool = False) -> int:
    """O_PATH fd of `path` resolved inside the root; raises FileNotFoundError."""
    rel = "/".join(parts_of(path)) or "."
    flags = os.O_PATH | (os.O_DIRECTORY if directory else 0)
    return openat2(root_fd, rel, flags, _RESOLVE)


def ensure_path(root_fd: int, path: str, directory: bool, mode: int = 0o755) -> int:
    """Create `path` (a directory, or an empty file) if missing; return its O_PATH fd.

    Each prefix is resolved afresh from the root, so an absolute symlink in
    the image (`/var/run -> /run`) means the image's `/run`, never the host's.
    """
    parts = parts_of(path)
    parent = os.dup(root_fd)
    try:
        for i, name in enumerate(parts):
            prefix = "/".join(parts[: i + 1])
            try:
                child = openat2(root_fd, prefix, os.O_PATH, _RESOLVE)
            except FileNotFoundError:
                if i == len(parts) - 1 and not directory:
                    os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     mode, dir_fd=parent))
                else:
                    try:
                        os.mkdir(name, mode, dir_fd=parent)
                    except FileExistsError:
                        pass
                child = openat2(root_fd, prefix, os.O_PATH, _RESOLVE)
            os.close(parent)
            parent = child
        return parent
    except BaseException:
        os.close(parent)
        raise


def fd_path(fd: int) -> str:
    """The magic link through which mount(2) acts on exactly this object."""
    return f"/proc/self/fd/{fd}"


def is_dir_fd(fd: int) -> bool:
    import stat
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def ignore_missing(err: OSError) -> bool:
    return err.errno in (errno.ENOENT, errno.ENOTDIR)
