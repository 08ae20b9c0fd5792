"""maskedPaths and readonlyPaths, applied after the switch to the new root."""
from __future__ import annotations

import errno
import os
import stat

from pyrun.linux import syscalls as s
from pyrun.rootfs.mounts import current_flags


def readonly(path: str) -> None:
    try:
        s.mount(path, path, None, s.MS_BIND | s.MS_REC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise
    s.mount(path, path, None, s.MS_BIND | s.MS_REMOUNT | s.MS_RDONLY | s.MS_REC | current_flags(path))


class NullSource:
    """The host's /dev/null, held as a detached bind mount taken before the
    switch to the new root: the mask source for files (CVE-2025-31133).

    The image's /dev/null (missing, a symlink into /proc, a regular file) or
    one swapped in by a sibling sharing /dev is never looked at.  The first
    mask attaches the held mount itself; later ones clone it, which every
    kernel allows once it is attached in our namespace.

    Masked directories share one empty read-only tmpfs, as in runc 1.3+: the
    first gets it, the others a clone of that mount (held by dir_fd)."""

    def __init__(self) -> None:
        self.fd = s.open_tree("/dev/null", recursive=False)
        self.attached = False
        self.dir_fd = -1
        st = os.fstat(self.fd)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
            self.close()
            raise OSError(errno.EINVAL, "can't mask paths: the host's /dev/null is not the null device (1:3)")

    def bind_onto(self, path: str) -> None:
        tree = s.clone_mount_of(self.fd) if self.attached else self.fd
        try:
            s.move_mount_to(tree, path)
        finally:
            if tree != self.fd:
                os.close(tree)
        self.attached = True

    def mask_dir(self, path: str) -> None:
        if self.dir_fd < 0:
            s.mount("tmpfs", path, "tmpfs", s.MS_RDONLY)
            self.dir_fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            return
        tree = s.clone_mount_of(self.dir_fd)
        try:
            s.move_mount_to(tree, path)
        finally:
            os.close(tree)

    def close(self) -> None:
        for fd in (self.fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.dir_fd = -1


def unique(paths: list[str]) -> list[str]:
    """maskedPaths once each, first wins, compared lexically cleaned
    ("/a/./b/" is "/a/b"), as runc >= 1.4: a second mask would stack another
    mount on the path."""
    seen: set[str] = set()
    out = []
    for path in paths:
        clean = os.path.normpath(path)
        clean = "/" + clean.lstrip("/") if clean.startswith("/") else clean
        if clean not in seen:
            seen.add(clean)
            out.append(path)
    return out


def mask(path: str, null: NullSource) -> None:
    """A directory gets an empty read-only tmpfs; anything else the null device."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            null.mask_dir(path)
        elif os.path.lexists(path):
            null.bind_onto(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
