"""`start`: release a created container's init by reading its exec.fifo."""
from __future__ import annotations

import os
import select

from pyrun import faults, log
from pyrun.errors import START_FAILED, PyrunError, init_failed
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
            fd = os.open(FIFO, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cdir.fd)
        except (FileNotFoundError, OSError):     # gone, or a symlink planted in its place
            raise PyrunError("cannot start an already running container") from None
        faults.point("start: fifo opened")
        try:
            data = _read_release(fd, pid, started)
        finally:
            os.close(fd)
        if not data:
            raise PyrunError("cannot start an already running container")
        cdir.remove_fifo()
        log.debug(f"start {container_id}: init {pid} released")
        faults.point("start: released")
        if data != b"0":     # "1<step>: <error>" (after "0" if execve failed); the init has exited
            if b"1" in data[:2]:
                step, _, text = data[data.index(b"1") + 1:].decode(errors="replace").partition(": ")
                e = init_failed(step, text)
            else:
                e = init_failed(None, repr(data))
            raise e.reworded(f"{START_FAILED}: {e}")
        poststart = ((state.get("config") or {}).get("hooks") or {}).get("poststart")
        if poststart:
            _run_poststart(state, poststart)


def _read_release(fd: int, pid: int, started: int | None) -> bytes:
    """Wait for the init's verdict (runc polls every 100 ms for a dead init),
    reading until the init's end closes at its execve: "0" alone, or "1" and
    the failing step with its error."""
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
