"""`Cgroup`: the interface every cgroup manager implements (youki's
CgroupManager trait, crun's libcrun_cgroup_manager vtable).  Implementations
import this module, never the factory (manager.py), so imports go one way.
"""
from __future__ import annotations

from abc import ABC, abstractmethod   # already loaded by the interpreter's start-up (os imports abc)

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any


class Cgroup(ABC):
    """A container's cgroup: made before the stages fork, joined by stage 1,
    limited once it holds only the init, removed by `delete`."""

    # What a "cgroup" mount inside the container shows: (v1 mountpoint's
    # basename or "" for cgroup2, host directory).  Known only to `create`.
    binds: list[tuple[str, str]] = []

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """What state.json (and the pending file of a create in progress) keeps: `load` takes it back."""

    def plan(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """What `new` does (did) for this cgroup, as `pyrun explain` and PYRUN_TRACE show it."""
        return [{"do": "stay in the caller's cgroup (rootless, no delegated cgroup)"}]

    def join_plan(self) -> list[dict[str, Any]]:
        """What `join` will write, as stage 1's plan shows it (nothing: no join)."""
        return []

    def mount_binds(self) -> list[tuple[str, str]]:
        """`binds`, also for a cgroup `load` rebuilt (checkpoint's external mounts)."""
        return self.binds

    def freezer_dir(self) -> str | None:
        """The directory whose freezer CRIU freezes the tree with (its freeze_cgroup)."""
        return None

    def audit(self) -> dict[str, Any]:
        """What `pyrun audit` reports: the directories and the limits in force, as their files say."""
        return {"paths": {}, "limits": {}}

    def check(self, resources: dict[str, Any] | None) -> None:
        """Refuse, before anything is forked, limits this cgroup can never take."""

    def prepare(self, resources: dict[str, Any] | None) -> None:
        """Import ahead of time what `update` will need (create's idle moment)."""

    @abstractmethod
    def update(self, resources: dict[str, Any] | None) -> None:
        """Write `linux.resources` (devices excepted); raises CgroupError naming the file."""

    def warm_join(self) -> None:
        """Start the kernel's slow part of a join while the parent goes on (fs.py says why)."""

    def reap_warm(self) -> None:
        """Collect what `warm_join` started; before any limit is written."""

    @abstractmethod
    def join(self, pid: int) -> None:
        """Move `pid` (stage 1, or an exec'd process) into the cgroup."""

    @abstractmethod
    def freeze(self) -> None:
        """Freeze every process; returns once they all are (OSError otherwise)."""

    @abstractmethod
    def thaw(self) -> None: ...

    @abstractmethod
    def frozen(self) -> bool:
        """Whether the freezer `freeze` uses says frozen: the only definition of "paused"."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Every process in the cgroup, sub-cgroups included."""

    @abstractmethod
    def kill(self, sig: int) -> bool:
        """Signal every process; False when there is no cgroup to find them
        in (the caller then signals the processes it knows)."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """runc's `types.Stats`."""

    @abstractmethod
    def oom_events(self) -> Any:
        """An oom.Watch: a pollable fd that fires on each OOM kill (fd -1: none)."""

    @abstractmethod
    def sub(self, subs: dict[str, str]) -> Cgroup:
        """The cgroup `exec --cgroup` joins: {controller or "": path below ours}."""

    @abstractmethod
    def destroy(self) -> None:
        """Kill what is left and remove the cgroup (OSError with runc's words)."""
