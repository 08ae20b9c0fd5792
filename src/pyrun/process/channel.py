"""Typed messages between the create process and its forked stages.

A SOCK_SEQPACKET socketpair keeps message boundaries, so each message is one
JSON object; file descriptors travel alongside as SCM_RIGHTS.
"""
from __future__ import annotations

from pyrun.state import jsonio as json     # json's output through _json, without importing re
from pyrun.linux import unixsock           # not socket: enum, selectors, functools (~4 ms)
from pyrun.records import dataclass, field   # not dataclasses: ~4 ms of imports
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any


class Msg:
    """Message kinds: plain strings (an Enum costs every create ~1.5 ms to import)."""
    USERMAP_REQUEST = "usermap-request"   # stage-1 unshared a user namespace; parent writes maps
    USERMAP_DONE = "usermap-done"
    BIND_SOURCES_REQUEST = "bind-sources-request"  # stage-1's namespaces exist; parent opens bind sources in them
    BIND_SOURCE = "bind-source"           # one, as an O_PATH fd: {index} of the mounts entry
    BIND_SOURCES_DONE = "bind-sources-done"
    INIT_PID = "init-pid"                 # stage-1 forked the init; its host pid
    REAPED = "reaped"                     # stage-1 is reaped: the init's parent is now the create process
    MOUNT_SOURCE_REQUEST = "mount-source-request"  # init sends a source inside the rootfs to idmap
    MOUNT_SOURCE = "mount-source"         # parent: its idmapped detached copy
    HOOKS_REQUEST = "hooks-request"       # mounts are done: parent runs prestart + createRuntime
    HOOKS_DONE = "hooks-done"
    LIMITS_REQUEST = "limits-request"     # scheduling next: parent writes linux.resources now (cpuset, RT time)
    LIMITS_DONE = "limits-done"
    RLIMITS_REQUEST = "rlimits-request"   # init is about to drop root; parent applies prlimit
    RLIMITS_DONE = "rlimits-done"
    SECCOMP_LISTENER = "seccomp-listener" # init loaded a NOTIFY filter; the fd goes to listenerPath
    SECCOMP_DONE = "seccomp-done"
    READY = "ready"                       # init finished set-up and waits for `start`
    ACK = "ack"                           # parent recorded the state; init may block on exec.fifo
    ERROR = "error"                       # a named step failed
    FAULT = "fault"                       # test-only (pyrun.faults): the parent must SIGKILL itself


KINDS = frozenset(v for k, v in vars(Msg).items() if k.isupper())


@dataclass
class Message:
    type: str        # one of Msg's
    data: dict[str, Any] = field(default_factory=dict)
    fds: list[int] = field(default_factory=list)


class ChannelClosed(Exception):
    """The peer went away (it exited or was killed)."""


class Channel:
    def __init__(self, sock: unixsock.Socket) -> None:
        self.sock = sock

    def send(self, kind: str, fds: list[int] | None = None, **data: Any) -> None:
        payload = json.dumps({"type": kind, **data}).encode()
        if fds:
            unixsock.send_fds(self.sock, payload, fds)
        else:
            self.sock.send(payload)

    def write(self, kind: str, **data: Any) -> None:
        """send() through write(2) alone: for use under a seccomp filter that
        may notify on the socket calls."""
        import os
        os.write(self.sock.fileno(), json.dumps({"type": kind, **data}).encode())

    def recv(self) -> Message:
        raw, fds = unixsock.recv_fds(self.sock, 65536, 4)
        if not raw:
            raise ChannelClosed()
        data = json.loads(raw)
        kind = data.pop("type", None)
        if kind not in KINDS:
            raise ChannelClosed(f"unknown message {kind!r}")
        return Message(kind, data, fds)

    def expect(self, kind: str) -> Message:
        msg = self.recv()
        if msg.type != kind:
            raise ChannelClosed(f"expected {kind}, got {msg.type}")
        return msg

    def close(self) -> None:
        self.sock.close()

    def peer_gone(self) -> bool:
        """The other end is closed (its process died), whatever is still queued."""
        import select     # built in: nothing to load
        poller = select.poll()
        poller.register(self.sock.fileno(), 0)      # POLLHUP is always reported
        return bool(poller.poll(0))


def pair() -> tuple[Channel, Channel]:
    """(parent end, child end); both are close-on-exec."""
    a, b = unixsock.socketpair(unixsock.SOCK_SEQPACKET)
    return Channel(a), Channel(b)
