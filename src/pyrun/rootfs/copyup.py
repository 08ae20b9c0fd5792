"""`tmpcopyup`: a tmpfs starts with a copy of the directory it covers (runc's
mount extension, used by podman and CRI-O for volumes over image content).

The rootfs is the container's: every name is taken relative to a directory
fd with O_NOFOLLOW, symlinks are copied as links and never followed, and a
file's type is checked on the opened fd, so a link or a swapped entry can
never make the copy read or write outside the two directories.
"""
from __future__ import annotations

import os
import stat

_OPEN = os.O_CLOEXEC | os.O_NOFOLLOW
_DIR = os.O_RDONLY | os.O_DIRECTORY | _OPEN


def copy_tree(src: int, dst: int) -> None:
    """Copy the entries of directory fd `src` into directory fd `dst`, with
    their owners and modes (as runc: directories, files, symlinks and device
    nodes; sockets and fifos are left out)."""
    with os.scandir(src) as entries:
        for entry in entries:
            _copy_entry(src, dst, entry)


def _copy_entry(src: int, dst: int, entry: os.DirEntry[str]) -> None:
    name = entry.name
    st = entry.stat(follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(name, 0o700, dir_fd=dst)
        sub_src, sub_dst = os.open(name, _DIR, dir_fd=src), os.open(name, _DIR, dir_fd=dst)
        try:
            copy_tree(sub_src, sub_dst)
            _own(sub_dst, st)
        finally:
            os.close(sub_src)
            os.close(sub_dst)
    elif stat.S_ISREG(st.st_mode):
        _copy_file(src, dst, name, st)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        os.mknod(name, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev, dir_fd=dst)
        fd = os.open(name, os.O_PATH | _OPEN, dir_fd=dst)
        try:
            _own(fd, st)
        finally:
            os.close(fd)


def _copy_file(src: int, dst: int, name: str, st: os.stat_result) -> None:
    fin = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _OPEN, dir_fd=src)
    try:
        if not stat.S_ISREG(os.fstat(fin).st_mode):
            raise OSError(f"{name}: changed while copied")
        fout = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN, 0o600, dir_fd=dst)
        try:
            while os.sendfile(fout, fin, None, 1 << 20):
                pass
            _own(fout, st)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _own(fd: int, st: os.stat_result) -> None:
    """Owner first: chown clears setuid/setgid, the mode then restores them.
    Through /proc/self/fd so an O_PATH fd (a device node) works too."""
    path = f"/proc/self/fd/{fd}"
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, stat.S_IMODE(st.st_mode))
