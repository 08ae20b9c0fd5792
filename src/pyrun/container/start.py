"""`start`: release a created container's init by reading its exec.fifo."""
from __future__ import annotations

import os
import select

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
        try:
            data = _read_release(fd, pid, started)
        finally:
            os.close(fd)
        if not data:
            raise PyrunError("cannot start an already running container")
        cdir.remove_fifo()


def _read_release(fd: int, pid: int, started: int | None) -> bytes:
    """Wait for the init's "0"; notice if it died instead (runc polls every 100 ms)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if poller.poll(100):
            try:
                return os.read(fd, 16)
            except BlockingIOError:
                continue
        if not is_alive(pid, started):
            raise PyrunError("container process is already dead")
