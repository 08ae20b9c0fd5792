"""AF_UNIX sockets and SCM_RIGHTS straight from `_socket`.

The `socket` module wraps the same C type, but importing it pulls in enum,
selectors, collections and functools: about 4 ms on every create, exec and
run.  The stages only need socketpair, sendmsg/recvmsg with fds and connect,
which `_socket.socket` has itself.  Its sockets are close-on-exec, as the
`socket` module's are.
"""
from __future__ import annotations

import _socket
import sys

Socket = _socket.socket
AF_UNIX = _socket.AF_UNIX
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_SEQPACKET = _socket.SOCK_SEQPACKET
_FD_SIZE = 4     # an int in the SCM_RIGHTS payload


def socketpair(kind: int = SOCK_STREAM) -> tuple[Socket, Socket]:
    return _socket.socketpair(AF_UNIX, kind)


def connect(path: str) -> Socket:
    sock = _socket.socket(AF_UNIX, SOCK_STREAM)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def send_fds(sock: Socket, data: bytes, fds: list[int]) -> int:
    payload = b"".join(fd.to_bytes(_FD_SIZE, sys.byteorder, signed=True) for fd in fds)
    return sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, payload)])


def recv_fds(sock: Socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it (already close-on-exec:
    recvmsg asks for MSG_CMSG_CLOEXEC)."""
    data, ancillary, _flags, _addr = sock.recvmsg(bufsize, _socket.CMSG_SPACE(maxfds * _FD_SIZE),
                                                  _socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, raw in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(raw) - len(raw) % _FD_SIZE
            fds += [int.from_bytes(raw[i:i + _FD_SIZE], sys.byteorder, signed=True)
                    for i in range(0, usable, _FD_SIZE)]
    return data, fds
