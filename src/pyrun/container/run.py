"""`run`: create + start, then (unless detached) wait, forwarding signals and
the terminal, and exit with the container's status."""
from __future__ import annotations

from pyrun.container.create import CreateRequest, create
from pyrun.container.delete import delete
from pyrun.container.foreground import forward_signals, proxy_terminal, wait
from pyrun.container.start import start


def run(req: CreateRequest, keep: bool = False) -> int:
    if req.detach:
        create(req)
        start(req.root, req.id)
        return 0
    created = create(req)
    pid = created.pid
    forward_signals(pid)
    try:
        start(req.root, req.id)
        if created.console is not None:
            from pyrun.process.terminal import receive_master
            master = receive_master(created.console)
            created.console.close()
            status = proxy_terminal(master, pid)
        else:
            status = wait(pid)
    finally:
        if not keep:
            delete(req.root, req.id, force=True)
    return status

