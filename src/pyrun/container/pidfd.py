"""--pidfd-socket: a pidfd of the container's init (create/run) or of an exec'd
process, sent over an AF_UNIX socket as runc 1.2+ sends it (one message,
"standard" or "setns", one SCM_RIGHTS fd) before the process may run."""
from __future__ import annotations

import os

from pyrun.errors import PyrunError, strerror
from pyrun.linux import unixsock


def connect(path: str) -> unixsock.Socket:
    """Before anything is made: a socket nobody listens on fails the command."""
    try:
        return unixsock.connect(path)
    except OSError as e:
        # runc's words (its typo included): "failed to dail <path>: dial unix <path>: connect: ..."
        raise PyrunError(f"failed to dail {path}: dial unix {path}: connect: {strerror(e.errno)}") from None


def send(sock: unixsock.Socket, pid: int, kind: str) -> None:
    """kind: "standard" for the init, "setns" for an exec'd process."""
    try:
        fd = os.pidfd_open(pid)
    except OSError as e:
        raise PyrunError(f"failed to pidfd_open: {strerror(e.errno)}") from None
    try:
        unixsock.send_fds(sock, kind.encode(), [fd])
    except OSError as e:
        raise PyrunError(f"failed to send pidfd on socket: {strerror(e.errno)}") from None
    finally:
        os.close(fd)
        sock.close()
