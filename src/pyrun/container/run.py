"""`run`: create + start, then (unless detached) wait, forwarding signals and
the terminal, and exit with the container's status."""
from __future__ import annotations

from pyrun.container.create import CreateRequest, create

# Imported by create while stage 1 waits on the kernel (create._meanwhile), not
# before it: they are needed only once the container exists.
LATER = ("pyrun.container.start", "pyrun.container.delete", "pyrun.container.foreground",
         "pyrun.cgroups.stats", "pyrun.container.kill")


def run(req: CreateRequest, keep: bool = False) -> int:
    req.later = LATER
    if req.detach:
        create(req)
        from pyrun.container.start import start
        start(req.root, req.id)
        return 0
    created = create(req)
    from pyrun.container.delete import delete
    from pyrun.container.foreground import copy_size, forward_signals, proxy_terminal, wait
    from pyrun.container.start import start
    pid = created.pid
    forward_signals(pid)
    try:
        master = None
        if created.console is not None:
            # The init sent the pty during create: size it before the process
            # runs (as runc does), or its first `stty size` may read 0 0.
            from pyrun.process.terminal import receive_master
            master = receive_master(created.console)
            created.console.close()
            copy_size(master)
        start(req.root, req.id)
        status = proxy_terminal(master, pid) if master is not None else wait(pid)
        from pyrun import log
        log.debug(f"run {req.id}: process {pid} exited, status {status}")
    finally:
        if not keep:
            delete(req.root, req.id, force=True)
    return status

