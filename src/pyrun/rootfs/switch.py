"""Making the rootfs the container's `/`: pivot_root, or MS_MOVE + chroot."""
from __future__ import annotations

import errno
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


def move_and_chroot(rootfs: str, proc_fd: int) -> None:
    """--no-pivot: for rootfs on ramfs, where pivot_root is refused.

    The old root stays in our mount namespace, under the chroot.  A full
    procfs or sysfs there would let the container mount a fresh, unmasked
    proc (`unshare -mrpf; mount -t proc`): the kernel allows that only while
    one is fully visible.  So those go first, as in runc's msMoveRoot."""
    _hide_host_proc_and_sys(os.path.realpath(rootfs), proc_fd)
    os.chdir(rootfs)
    s.mount(rootfs, "/", None, s.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def chroot_only(rootfs: str) -> None:
    """Without a private mount namespace there is nothing to pivot."""
    os.chroot(rootfs)
    os.chdir("/")


def make_parent_mount_private(rootfs: str, proc_fd: int) -> None:
    """The mount holding the rootfs goes private if it is shared or
    unbindable, before the rootfs is bound onto itself (as runc's
    rootfsParentMountPrivate, which covers only shared): a shared parent
    would carry that bind to its peers, the host's among them, and make
    pivot_root refuse (EINVAL); an unbindable one cannot be bound at all.
    Read from the runtime's procfs: this is our own mount namespace."""
    from pyrun.linux import procfs
    best, best_opts = "", []
    for line in procfs.read(proc_fd, "self/mountinfo").splitlines():
        fields = line.split()
        point = _unescape(fields[4])
        inside = rootfs == point or rootfs.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_opts = point, fields[6:fields.index("-")]
    if best and any(o.startswith("shared:") or o == "unbindable" for o in best_opts):
        s.mount(None, best, None, s.MS_PRIVATE)


def remount_root_readonly(path: str = "/") -> None:
    """`path` (the root, or /dev) read-only, keeping its other flags."""
    from pyrun.rootfs.mounts import current_flags
    s.mount(None, path, None, s.MS_BIND | s.MS_REMOUNT | s.MS_RDONLY | current_flags(path))


def _hide_host_proc_and_sys(rootfs: str, proc_fd: int) -> None:
    """Detach (or, where we may not, cover with tmpfs) every full proc and
    sysfs mount outside the rootfs, without the detach reaching the host."""
    from pyrun.linux import procfs
    points: dict[str, str] = {}           # mount ID -> mount point
    targets = []                          # (mount point, its parent's mount point)
    rows = [line.split() for line in procfs.read(proc_fd, "self/mountinfo").splitlines()]
    for fields in rows:
        points[fields[0]] = _unescape(fields[4])
    for fields in rows:
        fstype = fields[fields.index("-") + 1]
        point = _unescape(fields[4])
        if fields[3] != "/" or fstype not in ("proc", "sysfs"):
            continue
        if point == rootfs or point.startswith(rootfs.rstrip("/") + "/"):
            continue
        targets.append((point, points.get(fields[1], "/")))
    for point, parent in targets:
        try:
            # An unmount propagates through the parent's peer group (a
            # non-recursive rootfsPropagation leaves the host's shared mounts
            # shared): the parent only receives from now on, and so does the
            # mount itself.
            s.mount(None, parent, None, s.MS_SLAVE)
            s.mount(None, point, None, s.MS_SLAVE | s.MS_REC)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINVAL):    # already gone with a parent
                continue
            raise
        try:
            s.umount2(point, s.MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM):
                raise
            s.mount("tmpfs", point, "tmpfs", 0)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    if "\\" not in field:
        return field
    import re
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
