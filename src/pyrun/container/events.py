"""`events`: stats once (`--stats`) or a stream of stats and OOM events.

One JSON object per line, runc's shape: `{"type":"stats","id":..,"data":..}`
and `{"type":"oom","id":..}`.  The stream waits with poll(2) on the
cgroup's OOM source (cgroups/oom.py) between stats ticks (no threads).  It ends once the container has stopped
or been deleted.  The container is never locked, so `delete` is not held up.
"""
from __future__ import annotations

import json
import select
import sys
import time
from typing import Any

from pyrun.cgroups.manager import load
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
    return {"type": "stats", "id": container_id, "data": load(state).stats()}


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


def _stream(root: str, container_id: str, state: dict[str, Any], interval: float, out: Any) -> None:
    from pyrun import log
    watch = load(state).oom_events()
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
