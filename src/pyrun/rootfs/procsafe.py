"""No mount may put its own file tree into the container's /proc (runc's checkProcMount).

A volume over /proc/self (through an image symlink `/data -> /proc/self`), a
bind over /proc/sys/kernel, a tmpfs as /proc: each shows the container, and
anything that trusts the container's /proc, files that are not procfs.  The
check runs on where the destination really resolved to, after symlinks.
Only procfs itself may go on /proc, and below it only the files lxcfs
emulates.  A proc or sysfs mount must land on an ordinary directory, never
through a symlink (an image whose /proc points at a volume).
"""
from __future__ import annotations

import errno
import os
import stat

from pyrun.linux import syscalls as s
from pyrun.linux.procfs import PROC_SUPER_MAGIC
from pyrun.rootfs.paths import fd_path, parts_of

# The files lxcfs emulates, which runc lets a bind mount cover.
LXCFS_FILES = frozenset(("proc/cpuinfo", "proc/diskstats", "proc/meminfo", "proc/stat", "proc/swaps",
                         "proc/uptime", "proc/loadavg", "proc/slabinfo", "proc/sys/kernel/ns_last_pid",
                         "proc/sys/crypto/fips_enabled"))


def _refuse(message: str) -> OSError:
    return OSError(errno.EPERM, message)


def check_target(root_fd: int, target_fd: int, dest: str, fstype: str, src_fd: int = -1) -> None:
    """Refuse a mount whose resolved destination `target_fd` is /proc or below
    it, unless it is procfs on /proc or an lxcfs file.  `src_fd`: a bind's source."""
    root = os.readlink(fd_path(root_fd))
    full = os.readlink(fd_path(target_fd))
    rel = os.path.relpath(full, root)
    if rel != "proc" and not rel.startswith("proc/"):
        return
    if rel == "proc":
        if src_fd >= 0 and s.fstatfs_type(src_fd) == PROC_SUPER_MAGIC:
            return
        if src_fd < 0 and fstype == "proc":
            return
        raise _refuse(f'check proc-safety of {dest} mount: "{full}" cannot be mounted because it is not of type proc')
    if rel in LXCFS_FILES:
        return
    raise _refuse(f'check proc-safety of {dest} mount: "{full}" cannot be mounted because it is inside /proc')


def check_ordinary_directory(root_fd: int, dest: str, fstype: str) -> None:
    """proc and sysfs only on a real directory reached without any symlink."""
    rel = "/".join(parts_of(dest)) or "."
    try:
        fd = s.openat2(root_fd, rel, os.O_PATH,
                       s.RESOLVE_IN_ROOT | s.RESOLVE_NO_SYMLINKS | s.RESOLVE_NO_MAGICLINKS)
    except FileNotFoundError:
        return          # created as a directory by the mount
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        fd = -1
    try:
        if fd < 0 or not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise _refuse(f'filesystem "{fstype}" must be mounted on ordinary directory')
    finally:
        if fd >= 0:
            os.close(fd)
