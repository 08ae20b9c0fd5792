"""What create does, step by step, as one JSON line per step:
{"stage": "parent" | "stage 1" | "init", "step": name, "actions": [...]}.

Written only when PYRUN_TRACE names a file (a debugging aid; create's normal
path checks one integer).  The actions are the very plan objects each step
executes (process/init.py PLANS, process/stages.py bootstrap_plan, the
parent's records in container/create.py), so `pyrun explain`, which computes
the same plans without performing them, and a traced create agree by
construction where they share code, and a test checks they do.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ENV = "PYRUN_TRACE"


def open_trace() -> int:
    """The trace file's fd (append, close-on-exec), or -1 when not tracing."""
    path = os.environ.get(ENV)
    if not path:
        return -1
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def emit(fd: int, stage: str, step: str, actions: list[Any]) -> None:
    if fd < 0:
        return
    from pyrun.state.jsonio import dumps
    os.write(fd, (dumps({"stage": stage, "step": step, "actions": actions}, compact=True) + "\n").encode())
