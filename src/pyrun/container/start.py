"""`start`: release a created container's init by reading its exec.fifo."""
from __future__ import annotations

import os
import select

from pyrun import faults
from pyrun.errors import PyrunError
from pyrun.linux.proc import is_alive
from pyrun.state.status import CREATED, STOPPED, status_of
from pyrun.state.store import FIFO, ContainerDir


def start(root: str, container_id: str) -> None:
    with ContainerDir.open(root, container_id) as cdir:
        state = cdir.load()
        status = status_of(cdir, state)
        if status == STOPPED:
            raise PyrunError("cannot start a container that has stopped")
        if status != CREATED:
            raise PyrunError("cannot start an already running container")
        pid, started = state["init_process_pid"], state.get("init_process_start")
        try:
            fd = os.open(FIFO, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=cdir.fd)
        except FileNotFoundError:
            raise PyrunError("cannot start an already running container") from None
        faults.point("start: fifo opened")
        try:
            data = _read_release(fd, pid, started)
        finally:
            os.close(fd)
        data = data.lstrip(b"\0")     # the init's filler (process/init.py wait_for_start)
        if not data:
            raise PyrunError("cannot start an already running container")
        cdir.remove_fifo()
        faults.point("start: released")
        if data[:1] != b"0":        # a startContainer hook failed; the init has exited
            raise PyrunError(data[1:].decode(errors="replace"))
        poststart = ((state.get("config") or {}).get("hooks") or {}).get("poststart")
        if poststart:
            _run_poststart(state, poststart)


def _read_release(fd: int, pid: int, started: int | None) -> bytes:
    """Wait for the init's verdict (runc polls every 100 ms for a dead init):
    "0", or "1" and a startContainer hook's error; read until it closes."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    while True:
        if poller.poll(100):
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                return data
            data += chunk
        elif not data and not is_alive(pid, started):
            raise PyrunError("container process is already dead")


def _run_poststart(state: dict, hooks: list) -> None:
    """runtime.md step 9: a failing poststart hook is an error, and the
    container is stopped."""
    import signal

    from pyrun.hooks import hook_state, run_hooks
    config = state["config"]
    try:
        run_hooks("poststart", hooks, hook_state(config, state["id"], "running",
                                                 state["init_process_pid"], state["bundle"]))
    except PyrunError:
        try:
            os.kill(state["init_process_pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
