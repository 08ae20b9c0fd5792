"""The container's pty: made inside the container, the master sent out over
the console socket exactly as runc does (one message, one SCM_RIGHTS fd)."""
from __future__ import annotations

import fcntl
import os
import struct
import termios

from pyrun.linux import unixsock

_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def open_pty(size: dict[str, int] | None) -> tuple[int, int, str]:
    """(master, slave, slave path) from the container's /dev/ptmx."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))[0]
    slave_path = f"/dev/pts/{number}"
    if size:
        set_size(master, int(size.get("height", 0)), int(size.get("width", 0)))
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave, slave_path


def send_master(sock: unixsock.Socket, master: int) -> None:
    unixsock.send_fds(sock, b"/dev/ptmx", [master])


def receive_master(sock: unixsock.Socket) -> int:
    _msg, fds = unixsock.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("console socket: no file descriptor received")
    return fds[0]


def make_controlling(slave: int) -> None:
    """The pty becomes fds 0-2 and the session's controlling terminal."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
