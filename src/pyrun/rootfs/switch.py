"""Making the rootfs the container's `/`: pivot_root, or MS_MOVE + chroot."""
from __future__ import annotations

import os

from pyrun.linux import syscalls as s


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") then detach the old root stacked underneath."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        s.pivot_root(".", ".")
        os.fchdir(old_root)
        # Do not let the detach propagate back to the host.
        s.mount(None, ".", None, s.MS_SLAVE | s.MS_REC)
        s.umount2(".", s.MNT_DETACH)
    finally:
        os.close(old_root)
        os.close(new_root)
    os.chdir("/")


def move_and_chroot(rootfs: str) -> None:
    """--no-pivot: for rootfs on ramfs, where pivot_root is refused."""
    os.chdir(rootfs)
    s.mount(rootfs, "/", None, s.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def chroot_only(rootfs: str) -> None:
    """Without a private mount namespace there is nothing to pivot."""
    os.chroot(rootfs)
    os.chdir("/")


def remount_root_readonly() -> None:
    from pyrun.rootfs.mounts import current_flags
    s.mount(None, "/", None, s.MS_BIND | s.MS_REMOUNT | s.MS_RDONLY | current_flags("/"))
