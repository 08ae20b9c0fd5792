"""The null cgroup (crun's cgroup_manager_disabled): a rootless container
that may not make a cgroup stays in the caller's, and every operation
behaves as runc's does then: nothing to join, freeze or remove, limits
refused by name, signals only for the processes the caller knows.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups.base import Cgroup


class NullCgroup(Cgroup):
    def __init__(self, binds: list[tuple[str, str]] | None = None) -> None:
        self.binds = binds or []

    def __str__(self) -> str:
        return "none (the caller's cgroup)"

    def record(self) -> dict[str, Any]:
        return {"cgroup_paths": {}}

    def update(self, resources: dict[str, Any] | None) -> None:
        """Every limit is refused with runc's words (rootless.plan already
        refused them at create, so this only fires for `update`)."""
        if resources:
            from pyrun.cgroups import resources_v1
            resources_v1.apply({}, resources)

    def join(self, pid: int) -> None:
        pass

    def freeze(self) -> None:
        from pyrun.cgroups.freezer import NO_FREEZER
        raise OSError(0, NO_FREEZER)

    def thaw(self) -> None:
        pass

    def frozen(self) -> bool:
        return False

    def pids(self) -> list[int]:
        return []

    def kill(self, sig: int) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        from pyrun.cgroups.stats import collect
        return collect({})

    def oom_events(self) -> Any:
        from pyrun.cgroups.oom import Watch
        return Watch()

    def sub(self, subs: dict[str, str]) -> Cgroup:
        for controller in subs:
            if controller:
                from pyrun.errors import PyrunError
                raise PyrunError(f"unable to start container process: unknown controller {controller} "
                                 f"in SubCgroupPaths", exit_code=255)
        return self

    def destroy(self) -> None:
        pass
