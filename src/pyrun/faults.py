"""Test-only fault injection: `PYRUN_FAULT=<point>` SIGKILLs the pyrun
command when it reaches the named point.

Why: a runtime can die at any instant (the OOM killer, a shim's timeout, a
reboot of the caller).  tests/test_faults.py kills pyrun at every point and
checks that `state` still tells the truth and `delete --force` leaves
nothing behind.  Unset (always, outside tests) a point costs one
`os.environ.get`; this module imports nothing.

Two kinds of points:
- the commands' own points, in POINTS: the command kills itself there;
- the init's step names (process/init.py STEPS and EXEC_STEPS, up to and
  including "report ready"): the init (or exec'd process) at that step asks
  the `create`/`exec` command that forked it to die, and waits until it has,
  then goes on as it would after a real crash.  The init cannot signal it
  itself: from inside a new pid namespace the command's pid is invisible.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

ENV = "PYRUN_FAULT"

POINTS = {
    "create": ("create: claimed", "create: cgroup made", "create: state recorded"),
    "start": ("start: fifo opened", "start: released"),
    "delete": ("delete: stopped", "delete: cgroup removed"),
    "exec": ("exec: launched",),
}


def point(name: str) -> None:
    """In a command: die here (SIGKILL, no cleanup) when PYRUN_FAULT names this point."""
    if os.environ.get(ENV) == name:
        die()


def step(name: str, channel: Any) -> None:
    """In the init: when PYRUN_FAULT names this step, have the command die
    while we are at it (a FAULT message over the channel), and wait for it."""
    if os.environ.get(ENV) == name:
        from pyrun.process.channel import ChannelClosed, Msg
        try:
            channel.send(Msg.FAULT)
            while True:
                channel.recv()
        except (ChannelClosed, OSError):
            pass


def die() -> None:
    import signal
    os.kill(os.getpid(), signal.SIGKILL)
