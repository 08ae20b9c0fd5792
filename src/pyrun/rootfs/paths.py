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

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Callable

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
    """Create `path` (a directory, or an empty file) if missing; return its O_PATH fd."""
    def create(parent: int, name: str, last: bool) -> None:
        if last and not directory:
            flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, mode, dir_fd=parent))
        else:
            os.mkdir(name, mode, dir_fd=parent)
    return open_in_root(root_fd, resolve_in_root(root_fd, path, create), directory=directory)


def resolve_in_root(root_fd: int, path: str,
                    create: Callable[[int, str, bool], None] | None = None) -> str:
    """`path` with its symlinks followed as if the root were `/`: an absolute
    link in the image (`/var/run -> /run`) means the image's `/run`, and `..`
    never climbs above the root. A missing component is made by
    `create(parent_fd, name, is_last)` (a dangling link's target is so made
    inside the root, never outside); without `create` it is kept as named,
    and so is everything below it."""
    todo = parts_of(path)
    done: list[str] = []
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        try:
            parent = open_in_root(root_fd, "/".join(done), directory=True)
        except (FileNotFoundError, NotADirectoryError):
            if create is not None:
                raise
            done.append(name)       # below what is missing: no link to follow
            continue
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                if create is not None:
                    create(parent, name, not todo)
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
    return "/".join(done)


def fd_path(fd: int) -> str:
    """The magic link through which mount(2) acts on exactly this object."""
    return f"/proc/self/fd/{fd}"
