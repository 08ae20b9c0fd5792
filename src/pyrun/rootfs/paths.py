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
import stat

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

    The walk follows symlinks itself, as if the rootfs were `/`: an absolute
    link in the image (`/var/run -> /run`) means the image's `/run`, and a
    dangling one gets its target created inside the rootfs, never outside.
    """
    todo = parts_of(path)
    done: list[str] = []
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        parent = open_in_root(root_fd, "/".join(done), directory=True)
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                if not todo and not directory:
                    flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                    os.close(os.open(name, flags, mode, dir_fd=parent))
                else:
                    os.mkdir(name, mode, dir_fd=parent)
                done.append(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    done = []
                todo = parts_of(target) + todo
            else:
                done.append(name)
        finally:
            os.close(parent)
    return open_in_root(root_fd, "/".join(done), directory=directory)


def fd_path(fd: int) -> str:
    """The magic link through which mount(2) acts on exactly this object."""
    return f"/proc/self/fd/{fd}"
