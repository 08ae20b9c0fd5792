"""`delete`: remove a stopped container; with --force, stop it first."""
from __future__ import annotations

import os
from _signal import SIGKILL    # not signal: its enums cost every delete ~2 ms
import time
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun import errors, faults, log
from pyrun.cgroups.manager import load
from pyrun.errors import PyrunError
from pyrun.linux.proc import is_alive
from pyrun.state.status import STOPPED, status_of
from pyrun.state.store import ContainerDir, unlink_stray


def delete(root: str, container_id: str, force: bool = False) -> None:
    try:
        cdir = ContainerDir.open(root, container_id)
    except PyrunError as e:
        if str(e) == errors.NOT_EXIST:
            unlink_stray(root, container_id)
            if force:
                return
        raise
    with cdir:
        try:
            state = cdir.load()
        except PyrunError:
            # A directory without state is a leftover of a crashed create.
            _remove_pending_cgroup(cdir)
            cdir.remove()
            if force:
                return
            raise
        status = status_of(cdir, state)
        if status != STOPPED:
            if not force:
                raise PyrunError(f"cannot delete container {container_id} that is not stopped: {status}")
            stop(state)
            log.debug(f"delete {container_id}: {status}, stopped with SIGKILL")
            faults.point("delete: stopped")
        destroy(cdir, state)
        log.debug(f"delete {container_id}: cgroup and state removed")


def stop(state: dict[str, Any], timeout: float = 10.0) -> None:
    """SIGKILL everything in the container and wait until the init is gone."""
    cgroup = load(state)
    try:
        cgroup.thaw()     # a frozen task cannot die
    except OSError:
        pass
    pid, started = state["init_process_pid"], state.get("init_process_start")
    if is_alive(pid, started):
        try:
            os.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass
    if cgroup.pids():
        cgroup.kill(SIGKILL)
    deadline = time.monotonic() + timeout
    while is_alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.002)


def destroy(cdir: ContainerDir, state: dict[str, Any]) -> None:
    try:
        load(state).destroy()      # without a pid namespace the init's death kills nothing else
    except OSError as e:
        raise PyrunError(e.strerror or str(e)) from None
    faults.point("delete: cgroup removed")
    cdir.remove()
    config = state.get("config") or {}
    poststop = (config.get("hooks") or {}).get("poststop")
    if poststop:
        _run_poststop(state, config, poststop)


def _remove_pending_cgroup(cdir: ContainerDir) -> None:
    """A create killed before it wrote state.json left its cgroup (and maybe
    a half set-up init in it) recorded in PENDING_FILE: kill and remove."""
    import json

    from pyrun.state.store import PENDING_FILE
    try:
        fd = cdir.open_file(PENDING_FILE)      # a symlink to a forged file names no cgroup of ours
        if fd < 0:
            return
        with os.fdopen(fd) as f:
            pending = json.load(f)
        cgroup = load(pending if isinstance(pending, dict) else {})
    except (OSError, ValueError, AttributeError):
        return
    try:
        cgroup.destroy()
    except OSError as e:
        raise PyrunError(e.strerror or str(e)) from None


def _run_poststop(state: dict[str, Any], config: dict[str, Any], hooks: list[Any]) -> None:
    """runtime.md step 13: each failure is a warning; the rest still run."""
    from pyrun import log
    from pyrun.hooks import hook_state, run_hooks
    st = hook_state(config, state["id"], "stopped", None, state.get("bundle", ""))
    for i, hook in enumerate(hooks):
        try:
            run_hooks("poststop", [hook], st)
        except PyrunError as e:
            log.warning(str(e).replace("poststop hook #0", f"poststop hook #{i}"))
