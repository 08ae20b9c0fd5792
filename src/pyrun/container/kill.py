"""`kill`: deliver a signal to the init, or to every process of the container."""
from __future__ import annotations

import os

import _signal      # the C module: signal.py would build its enums (enum: ~2 ms per kill)

from pyrun import errors
from pyrun.errors import PyrunError
from pyrun.state.status import STOPPED, status_of
from pyrun.state.store import ContainerDir


def parse_signal(raw: str) -> int:
    """A number, `KILL` or `SIGKILL` (any case), as runc accepts them."""
    if raw.isdigit():
        num = int(raw)
        if 0 < num < _signal.NSIG:
            return num
    else:
        name = raw.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        sig = getattr(_signal, name, None) if not name.startswith("SIG_") else None
        if isinstance(sig, int):      # signal.Signals' members: _signal's SIG* names
            return sig
    raise PyrunError(f"unknown signal {raw!r}")


def kill(root: str, container_id: str, sig: int, all_processes: bool = False) -> None:
    with ContainerDir.open(root, container_id) as cdir:
        state = cdir.load()
        if status_of(cdir, state) == STOPPED:
            if all_processes:
                return          # runc ignores "not running" with --all
            raise PyrunError(errors.NOT_RUNNING)
        private_pidns = "pid" in (state.get("namespace_paths") or {}) and \
            str(state["namespace_paths"]["pid"]).startswith(f"/proc/{state['init_process_pid']}/")
        if all_processes or (sig == _signal.SIGKILL and not private_pidns):
            from pyrun.cgroups.manager import CgroupManager
            CgroupManager(state.get("cgroup_paths") or {}).signal_all(sig)
            return
        try:
            os.kill(state["init_process_pid"], sig)
        except ProcessLookupError:
            raise PyrunError(errors.NOT_RUNNING) from None
