"""procfs reached through a verified fd, never through a path in the container.

Once the config's mounts are in place, `/proc` inside the new root may be a
fake tree: a volume over /proc/self via an image symlink, a bind over
/proc/sys/kernel, an image whose /proc is plain files (CVE-2025-52881 class).
So stage 1 opens the runtime's own /proc before it joins or creates any
namespace, checks that it is the root of a procfs, and every later read or
write of a procfs file (setgroups, cap_last_cap, sysctls, LSM attrs,
mountinfo) resolves beneath that fd and checks the file it got is procfs.
No mount of the container can sit on that walk: the fd belongs to the
runtime's mount namespace.
"""
from __future__ import annotations

import errno
import os

from pyrun.linux import syscalls as s

PROC_SUPER_MAGIC = 0x9FA0
PROC_ROOT_INO = 1
_RESOLVE = s.RESOLVE_BENEATH | s.RESOLVE_NO_MAGICLINKS


def open_root(path: str = "/proc") -> int:
    """O_PATH fd of the procfs root at `path`; refuses anything else."""
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if s.fstatfs_type(fd) != PROC_SUPER_MAGIC or os.fstat(fd).st_ino != PROC_ROOT_INO:
            raise OSError(errno.EXDEV, f"{path} is not the root of a procfs mount", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(proc_fd: int, rel: str, flags: int) -> int:
    """Open `rel` ("sys/kernel/cap_last_cap", "self/setgroups") beneath the
    procfs root `proc_fd`: no magic links, no crossing into another
    filesystem (a mount over part of the host's /proc made by whoever runs
    us, e.g. a read-only /proc/sys, is still procfs and is accepted)."""
    try:
        fd = s.openat2(proc_fd, rel, flags, _RESOLVE | s.RESOLVE_NO_XDEV)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise OSError(e.errno, os.strerror(e.errno), "/proc/" + rel) from None
        fd = s.openat2(proc_fd, rel, flags, _RESOLVE)
    try:
        if s.fstatfs_type(fd) != PROC_SUPER_MAGIC:
            raise OSError(errno.EXDEV, "not on procfs", "/proc/" + rel)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read(proc_fd: int, rel: str) -> str:
    fd = open_file(proc_fd, rel, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)
    finally:
        os.close(fd)


def write(proc_fd: int, rel: str, data: str) -> None:
    fd = open_file(proc_fd, rel, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def open_fds(proc_fd: int) -> list[int]:
    """The fds this process has open, from its fd directory under `proc_fd`
    (including the one used to list them, closed by then)."""
    fd = open_file(proc_fd, "self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return [int(name) for name in os.listdir(fd)]
    finally:
        os.close(fd)


def last_cap(proc_fd: int) -> int:
    return int(read(proc_fd, "sys/kernel/cap_last_cap"))


def open_private() -> int:
    """A procfs instance of our own pid namespace, made for us alone: read-only,
    only the pid directories (subset=pid, where the kernel has it), attached
    nowhere. The init reopens exec.fifo through it while it waits for
    `start`, when the host's /proc fd is already closed and the container's
    /proc may be anything; holding it exposes no host path and no sysctl."""
    attrs = s.MOUNT_ATTR_RDONLY | s.MOUNT_ATTR_NOSUID | s.MOUNT_ATTR_NODEV | s.MOUNT_ATTR_NOEXEC
    try:
        return s.fsmount_new("proc", {"subset": "pid"}, attrs)
    except OSError as e:
        if e.errno != errno.EINVAL:        # subset= needs Linux 5.8
            raise
    return s.fsmount_new("proc", {}, attrs)


def cloexec_from(proc_fd: int, first: int) -> None:
    """Mark every fd >= first close-on-exec: close_range(CLOSE_RANGE_CLOEXEC),
    or, where the kernel lacks it (ENOSYS; EINVAL before 5.11) or a seccomp
    filter refuses it (EPERM), fd by fd from our fd list read beneath
    `proc_fd` (never the container's /proc: a fake list would hide a leak)."""
    try:
        s.close_range_cloexec(first)
        return
    except OSError:     # any errno: a filter pyrun itself runs under picks its own (runc bats: ENXIO)
        pass
    listing = open_file(proc_fd, "self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = os.listdir(listing)
    finally:
        os.close(listing)
    for name in names:
        fd = int(name)
        if fd >= first and fd != listing:
            try:
                os.set_inheritable(fd, False)      # FD_CLOEXEC, without importing fcntl
            except OSError as e:
                if e.errno != errno.EBADF:    # closed meanwhile: the listing's own fd
                    raise
