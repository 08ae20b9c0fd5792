"""Typed messages between the create process and its forked stages.

A SOCK_SEQPACKET socketpair keeps message boundaries, so each message is one
JSON object; file descriptors travel alongside as SCM_RIGHTS.
"""
from __future__ import annotations

from pyrun.state import jsonio as json     # json's output through _json, without importing re
import socket
from pyrun.records import dataclass, field   # not dataclasses: ~4 ms of imports
from enum import Enum
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any


class Msg(str, Enum):
    USERMAP_REQUEST = "usermap-request"   # stage-1 unshared a user namespace; parent writes maps
    USERMAP_DONE = "usermap-done"
    INIT_PID = "init-pid"                 # stage-1 forked the init; its host pid
    HOOKS_REQUEST = "hooks-request"       # mounts are done: parent runs prestart + createRuntime
    HOOKS_DONE = "hooks-done"
    RLIMITS_REQUEST = "rlimits-request"   # init is about to drop root; parent applies prlimit
    RLIMITS_DONE = "rlimits-done"
    SECCOMP_LISTENER = "seccomp-listener" # init loaded a NOTIFY filter; the fd goes to listenerPath
    SECCOMP_DONE = "seccomp-done"
    READY = "ready"                       # init finished set-up and waits for `start`
    ACK = "ack"                           # parent recorded the state; init may block on exec.fifo
    ERROR = "error"                       # a named step failed
    FAULT = "fault"                       # test-only (pyrun.faults): the parent must SIGKILL itself


@dataclass
class Message:
    type: Msg
    data: dict[str, Any] = field(default_factory=dict)
    fds: list[int] = field(default_factory=list)


class ChannelClosed(Exception):
    """The peer went away (it exited or was killed)."""


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, kind: Msg, fds: list[int] | None = None, **data: Any) -> None:
        payload = json.dumps({"type": kind.value, **data}).encode()
        if fds:
            socket.send_fds(self.sock, [payload], fds)
        else:
            self.sock.send(payload)

    def write(self, kind: Msg, **data: Any) -> None:
        """send() through write(2) alone: for use under a seccomp filter that
        may notify on the socket calls."""
        import os
        os.write(self.sock.fileno(), json.dumps({"type": kind.value, **data}).encode())

    def recv(self) -> Message:
        raw, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 4)
        if not raw:
            raise ChannelClosed()
        data = json.loads(raw)
        return Message(Msg(data.pop("type")), data, list(fds))

    def expect(self, kind: Msg) -> Message:
        msg = self.recv()
        if msg.type is not kind:
            raise ChannelClosed(f"expected {kind.value}, got {msg.type.value}")
        return msg

    def close(self) -> None:
        self.sock.close()


def pair() -> tuple[Channel, Channel]:
    """(parent end, child end); both are close-on-exec."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return Channel(a), Channel(b)
