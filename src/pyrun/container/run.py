"""`run`: create + start, then (unless detached) wait, forwarding signals and
the terminal, and exit with the container's status."""
from __future__ import annotations

import os
import socket

from pyrun.container.create import CreateRequest, create
from pyrun.container.delete import delete
from pyrun.container.foreground import forward_signals, proxy_terminal, wait
from pyrun.container.start import start


def run(req: CreateRequest, keep: bool = False) -> int:
    if req.detach:
        create(req)
        start(req.root, req.id)
        return 0
    sink_parent = None
    if _wants_terminal(req) and not req.console_socket:
        sink_parent, req.console_sink = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        created = create(req)
    finally:
        if req.console_sink is not None:
            req.console_sink.close()
    pid = created.pid
    forward_signals(pid)
    try:
        start(req.root, req.id)
        if sink_parent is not None:
            from pyrun.process.terminal import receive_master
            master = receive_master(sink_parent)
            sink_parent.close()
            status = proxy_terminal(master, pid)
        else:
            status = wait(pid)
    finally:
        if not keep:
            delete(req.root, req.id, force=True)
    return status


def _wants_terminal(req: CreateRequest) -> bool:
    import json
    try:
        with open(os.path.join(req.bundle or ".", "config.json")) as f:
            return bool((json.load(f).get("process") or {}).get("terminal"))
    except (OSError, ValueError, AttributeError):
        return False
