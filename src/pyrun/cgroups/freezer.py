"""Freezing a container's cgroup: `pause`, `resume`, and `kill --all`.

cgroup v1 has a freezer controller (`freezer.state`: THAWED, FREEZING,
FROZEN); cgroup v2 has `cgroup.freeze` in every non-root cgroup and reports
completion as `frozen 1` in `cgroup.events`.  On a hybrid host the v1
freezer is the one used when it is mounted (as runc), else cgroup.freeze:
`fs.FsCgroup.freezer` chooses, and pause, resume, kill and status all ask it.  Both
freeze asynchronously: a task in an uninterruptible sleep freezes only when
it wakes, so we wait, and undo a freeze that does not complete.
"""
from __future__ import annotations

import os
import time

TIMEOUT = 10.0
NO_FREEZER = "cgroups: no freezer available for this container"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _v2_frozen(cgroup: str) -> bool:
    for line in _read(os.path.join(cgroup, "cgroup.events")).splitlines():
        key, _, value = line.partition(" ")
        if key == "frozen":
            return value.strip() == "1"
    return False


def freeze(kind: str, cgroup: str, timeout: float = TIMEOUT) -> None:
    """Freeze every task in `cgroup` ("v1": freezer.state, "v2": cgroup.freeze),
    returning once they all are."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    if kind == "v1":
        state = os.path.join(cgroup, "freezer.state")
        while True:
            _write(state, "FROZEN")       # rewriting retries tasks that were busy
            if _read(state).strip() == "FROZEN":
                return
            if time.monotonic() > deadline:
                _write(state, "THAWED")
                raise OSError(0, f"unable to freeze {cgroup}: still FREEZING after {timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
    _write(os.path.join(cgroup, "cgroup.freeze"), "1")
    while not _v2_frozen(cgroup):
        if time.monotonic() > deadline:
            _write(os.path.join(cgroup, "cgroup.freeze"), "0")
            raise OSError(0, f"unable to freeze {cgroup}: cgroup.events never reported frozen")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def thaw(kind: str, cgroup: str) -> None:
    if kind == "v1":
        _write(os.path.join(cgroup, "freezer.state"), "THAWED")
    else:
        _write(os.path.join(cgroup, "cgroup.freeze"), "0")
