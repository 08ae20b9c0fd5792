"""The container's pty: made inside the container, the master sent out over
the console socket exactly as runc does (one message, one SCM_RIGHTS fd)."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import termios

from pyrun.linux import unixsock

_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def open_pty(size: dict[str, int] | None) -> tuple[int, int]:
    """(master, slave) from the container's /dev/ptmx.  The slave comes from
    the master itself (TIOCGPTPEER), never from a /dev/pts/N path lookup."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(master)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(5, 2):
            raise OSError(errno.EINVAL, "/dev/ptmx is not the ptmx device (5:2)")
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        if size:
            set_size(master, int(size.get("height", 0)), int(size.get("width", 0)))
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def mount_console(slave: int) -> None:
    """Bind the pty over /dev/console (CVE-2025-52565 class).

    The target is opened without following a symlink, or created, and the
    mount goes from fd to fd (open_tree, move_mount): whatever the container
    or a sibling sharing /dev puts at /dev/console, the pty lands on that
    one regular file or device node, or nowhere."""
    from pyrun.linux import syscalls as s
    target = _console_target()
    try:
        tree = s.clone_mount_of(slave)
        try:
            s.move_mount_fd(tree, target)
        except OSError as e:     # ENOENT: the file was renamed away meanwhile
            from pyrun.errors import strerror
            raise OSError(e.errno, "mount the pty on /dev/console: " + strerror(e.errno)) from None
        finally:
            os.close(tree)
    finally:
        os.close(target)


def _console_target() -> int:
    # After the switch to the new root: "/" is the container's root.
    dev = os.open("/dev", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = os.open("console", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
        except FileNotFoundError:
            # O_EXCL: the fd is the file we just made, or the open fails.
            flags = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC
            try:
                return os.open("console", flags, 0o666, dir_fd=dev)
            except OSError as e:
                raise _refusal(e.errno) from None
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind not in (stat.S_IFREG, stat.S_IFCHR):
            os.close(fd)
            raise _refusal({stat.S_IFLNK: errno.ELOOP, stat.S_IFDIR: errno.EISDIR}.get(kind, errno.EINVAL))
        return fd
    finally:
        os.close(dev)


def _refusal(err: int) -> OSError:
    """runc's wording for a /dev/console it will not mount on."""
    from pyrun.errors import strerror
    return OSError(err, "create /dev/console mount target: open /dev/console: " + strerror(err))


def send_master(sock: unixsock.Socket, master: int) -> None:
    unixsock.send_fds(sock, b"/dev/ptmx", [master])


def receive_master(sock: unixsock.Socket) -> int:
    """The pty master, for our own foreground proxy (run/exec without
    --console-socket); ONLCR off, so that our stdout gets the container's
    bytes ("\n", not "\r\n"), as from runc's foreground terminal."""
    _msg, fds = unixsock.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("console socket: no file descriptor received")
    clear_onlcr(fds[0])
    return fds[0]


def clear_onlcr(fd: int) -> None:
    """Stop the pty's output processing from turning "\n" into "\r\n"."""
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def make_controlling(slave: int) -> None:
    """The pty becomes fds 0-2 and the session's controlling terminal."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
