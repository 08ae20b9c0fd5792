"""`kill`: deliver a signal to the init, or to every process of the container."""
from __future__ import annotations

import os

import _signal      # the C module: signal.py would build its enums (enum: ~2 ms per kill)

from pyrun import errors, log
from pyrun.cgroups.manager import load
from pyrun.errors import PyrunError
from pyrun.state.status import PAUSED, STOPPED, status_of
from pyrun.state.store import ContainerDir


def parse_signal(raw: str) -> int:
    """A number, `KILL` or `SIGKILL` (any case), as runc accepts them; 0 asks
    only whether the container is alive."""
    if raw.isdigit():
        num = int(raw)
        if 0 <= num < _signal.NSIG:
            return num
    else:
        name = raw.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        sig = getattr(_signal, name, None) if not name.startswith("SIG_") else None
        if isinstance(sig, int):      # signal.Signals' members: _signal's SIG* names
            return sig
    raise PyrunError(f'unknown signal "{raw}"')     # Go's %q, as runc words it


def kill(root: str, container_id: str, sig: int | str, all_processes: bool = False) -> None:
    """sig: a number, or a name parsed once the container is known to exist
    (runc: "container does not exist" wins over "unknown signal")."""
    with ContainerDir.open(root, container_id) as cdir:
        if isinstance(sig, str):
            sig = parse_signal(sig)
        state = cdir.load()
        status = status_of(cdir, state)
        private_pidns = "pid" in (state.get("namespace_paths") or {}) and \
            str(state["namespace_paths"]["pid"]).startswith(f"/proc/{state['init_process_pid']}/")
        if status == STOPPED:
            if all_processes:
                return          # runc ignores "not running" with --all
            if sig == _signal.SIGKILL and not private_pidns:
                # The host's pid namespace: the init is gone, not what it
                # started (exec'd processes); runc 1.2+ kills those too.
                cgroup = load(state)
                if cgroup.pids():
                    log.debug(f"kill {container_id}: stopped, KILL to what is left in its cgroup")
                    cgroup.kill(sig)
                    return
            raise PyrunError(errors.NOT_RUNNING)
        if sig == 0:         # `kill ID 0`: is it alive? Nothing to freeze or signal.
            if not all_processes:
                _alive(state["init_process_pid"])
            log.debug(f"kill {container_id}: {status}, alive")
            return
        cgroup = load(state)
        # rootless without a cgroup (kill() says False): only the init can be named (runc does the same)
        if (all_processes or (sig == _signal.SIGKILL and not private_pidns)) and cgroup.kill(sig):
            log.debug(f"kill {container_id}: signal {sig} to every process in its cgroup")
        else:
            log.debug(f"kill {container_id}: signal {sig} to init {state['init_process_pid']}")
            try:
                os.kill(state["init_process_pid"], sig)
            except ProcessLookupError:
                raise PyrunError(errors.NOT_RUNNING) from None
        if status == PAUSED and sig == _signal.SIGKILL:
            cgroup.thaw()         # a frozen task dies only once thawed


def _alive(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise PyrunError(errors.NOT_RUNNING) from None
