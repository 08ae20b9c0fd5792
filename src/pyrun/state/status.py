"""What a container's status is right now, from its state and the kernel.

runc's order, first match wins: paused (freezer) -> stopped (init gone,
zombie, or a different process under the same pid) -> created (exec.fifo
still there) -> running.
"""
from __future__ import annotations

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.linux.proc import is_alive
from pyrun.state.store import ContainerDir

CREATED, RUNNING, PAUSED, STOPPED = "created", "running", "paused", "stopped"


def status_of(cdir: ContainerDir, state: dict[str, Any]) -> str:
    pid = state.get("init_process_pid") or 0
    alive = pid > 0 and is_alive(pid, state.get("init_process_start"))
    if alive:
        from pyrun.cgroups.manager import load    # only a live container can be paused
        if load(state).frozen():
            return PAUSED
    if not alive:
        return STOPPED
    if cdir.has_fifo() and not _has_exec_ed(pid, state):
        return CREATED
    return RUNNING


def oci_state(cdir: ContainerDir, state: dict[str, Any], status: str) -> dict[str, Any]:
    """The runtime-spec state object, in runc's field order."""
    out: dict[str, Any] = {
        "ociVersion": state.get("oci_version", ""),
        "id": state["id"],
        "pid": state.get("init_process_pid", 0) if status != STOPPED else 0,
        "status": status,
        "bundle": state.get("bundle", ""),
        "rootfs": state.get("rootfs", ""),
        "created": state.get("created", ""),
    }
    if state.get("annotations"):
        out["annotations"] = state["annotations"]
    out["owner"] = state.get("owner", "")
    return out


def _has_exec_ed(pid: int, state: dict[str, Any]) -> bool:
    """A `start` killed between releasing the init and removing exec.fifo
    leaves the fifo behind: the init's executable tells whether it ran."""
    recorded = state.get("init_process_exe")
    if not recorded:
        return False
    from pyrun.linux.proc import exe_id
    now = exe_id(pid)
    return now is not None and now != recorded
