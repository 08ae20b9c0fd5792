"""`events`: stats once (`--stats`) or a stream of stats and OOM events.

One JSON object per line, runc's shape: `{"type":"stats","id":..,"data":..}`
and `{"type":"oom","id":..}`.  The stream waits with poll(2) on the OOM
source between stats ticks (no threads): on v1 an eventfd registered on
memory.oom_control through cgroup.event_control, on v2 memory.events, whose
changes kernfs reports as POLLPRI.  It ends once the container has stopped
or been deleted.  The container is never locked, so `delete` is not held up.
"""
from __future__ import annotations

import json
import os
import select
import sys
import time
from typing import Any, Callable

from pyrun.errors import PyrunError
from pyrun.state.status import STOPPED, status_of
from pyrun.state.store import ContainerDir


def _load(root: str, container_id: str) -> tuple[dict[str, Any], str]:
    with ContainerDir.open(root, container_id, lock=False) as cdir:
        state = cdir.load()
        return state, status_of(cdir, state)


def _running_state(root: str, container_id: str) -> dict[str, Any]:
    state, status = _load(root, container_id)
    if status == STOPPED:
        raise PyrunError(f"container with id {container_id} is not running")
    return state


def stats_event(container_id: str, state: dict[str, Any]) -> dict[str, Any]:
    from pyrun.cgroups.stats import collect
    return {"type": "stats", "id": container_id, "data": collect(state.get("cgroup_paths") or {})}


def _emit(event: dict[str, Any], out: Any) -> None:
    out.write(json.dumps(event, separators=(",", ":")) + "\n")
    out.flush()


def events(root: str, container_id: str, interval: float, stats_only: bool, out: Any = None) -> None:
    out = out or sys.stdout
    if interval <= 0:
        raise PyrunError("duration interval must be greater than 0")
    state = _running_state(root, container_id)
    if stats_only:
        _emit(stats_event(container_id, state), out)
        return
    _stream(root, container_id, state, interval, out)


class _OomWatch:
    """The container's OOM notification source, as a pollable fd."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.fd = -1
        self.events = 0
        self.check: Callable[[], bool] = lambda: False
        self.v1 = next((p for k, p in paths.items() if "memory" in k.split(",")), None)
        try:
            if self.v1 is not None:
                self._setup_v1(self.v1)
            elif "" in paths:
                self._setup_v2(paths[""])
        except OSError:
            self.close()        # no OOM source (no memory controller here): stats only

    def _setup_v1(self, cgroup: str) -> None:
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        self.fd = efd
        ofd = os.open(os.path.join(cgroup, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(os.path.join(cgroup, "cgroup.event_control"), "w") as f:
                f.write(f"{efd} {ofd}")
        finally:
            os.close(ofd)
        self.events = select.POLLIN

        def fired() -> bool:
            os.eventfd_read(efd)
            # the eventfd also fires when the cgroup goes away: that is no OOM
            return os.path.exists(os.path.join(cgroup, "cgroup.event_control"))
        self.check = fired

    def _setup_v2(self, cgroup: str) -> None:
        self.fd = os.open(os.path.join(cgroup, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
        self.events = select.POLLPRI | select.POLLERR
        seen = [self._oom_kills()]

        def fired() -> bool:
            count = self._oom_kills()
            grew, seen[0] = count > seen[0], count
            return grew
        self.check = fired

    def _oom_kills(self) -> int:
        text = os.pread(self.fd, 4096, 0).decode()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _stream(root: str, container_id: str, state: dict[str, Any], interval: float, out: Any) -> None:
    from pyrun import log
    watch = _OomWatch(state.get("cgroup_paths") or {})
    poller = select.poll()
    if watch.fd >= 0:
        poller.register(watch.fd, watch.events)
    next_tick = time.monotonic() + interval
    try:
        while True:
            wait = max(0.0, min(next_tick - time.monotonic(), 0.5))
            if poller.poll(wait * 1000) and watch.check():
                _emit({"type": "oom", "id": container_id}, out)
            try:
                state, status = _load(root, container_id)
            except PyrunError:
                return              # deleted
            if status == STOPPED:
                return
            if time.monotonic() >= next_tick:
                next_tick += interval
                try:
                    event = stats_event(container_id, state)
                except OSError as e:
                    log.error(f"unable to read stats: {e}")     # as runc: report and keep going
                else:
                    _emit(event, out)
    finally:
        watch.close()
