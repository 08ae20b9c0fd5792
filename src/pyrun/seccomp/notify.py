"""Hand a SCMP_ACT_NOTIFY listener fd to the seccomp agent at linux.seccomp.listenerPath.

Runs in the parent (`pyrun create`), which got the fd from the init over the
channel.  The runtime-spec's "container process state" goes over one
AF_UNIX/SOCK_STREAM connection, with the fd as SCM_RIGHTS on the first
sendmsg; the connection is then closed and never reused.
"""
from __future__ import annotations

import json
import socket
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import PyrunError, strerror


def process_state(ctx: Any, init_pid: int) -> dict[str, Any]:
    """The container process state (config-linux.md) for this container."""
    from pyrun import SPEC_VERSION
    cfg = ctx.linux.get("seccomp") or {}
    # `exec` joins a running container; create's init is still being set up.
    status = "running" if getattr(ctx, "mode", "init") == "exec" else "creating"
    state: dict[str, Any] = {"ociVersion": SPEC_VERSION, "id": ctx.container_id,
                             "status": status, "pid": init_pid, "bundle": ctx.bundle}
    if ctx.spec.get("annotations"):
        state["annotations"] = ctx.spec["annotations"]
    payload: dict[str, Any] = {"ociVersion": SPEC_VERSION, "fds": ["seccompFd"], "pid": init_pid}
    if cfg.get("listenerMetadata"):
        payload["metadata"] = cfg["listenerMetadata"]
    payload["state"] = state
    return payload


def send_to_agent(ctx: Any, init_pid: int, fd: int) -> None:
    """Connect, send the state with `fd`, close; any failure fails the create (or exec).

    `init_pid` is the process the filter is on, as this (host) side sees it."""
    path = (ctx.linux.get("seccomp") or {}).get("listenerPath")
    if not path:
        raise PyrunError("linux.seccomp.listenerPath: not set, but the filter has a listener")
    data = json.dumps(process_state(ctx, init_pid)).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(path)
        except OSError as e:
            # runc's words, Go's dial error included: callers grep for them
            raise PyrunError("failed to connect with seccomp agent specified in the seccomp profile: "
                             f"dial unix {path}: connect: {strerror(e.errno)}") from None
        try:
            sent = socket.send_fds(sock, [data], [fd])
            if sent < len(data):        # a stream may take it in parts; the fd went with the first
                sock.sendall(data[sent:])
        except OSError as e:
            raise PyrunError(f"failed to send seccomp fd to agent at {path}: {strerror(e.errno)}") from None
    finally:
        sock.close()
