"""Everything the forked stages need, built by the parent before it forks.

The stages inherit this object through fork(): nothing is serialised.
"""
from __future__ import annotations

from pyrun.records import dataclass, field   # not dataclasses: ~4 ms of imports
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups.manager import Cgroup


@dataclass
class LaunchContext:
    """What a stage needs; `mode` is "init" for create, "exec" for a process
    joining a running container."""
    container_id: str
    spec: dict[str, Any]
    bundle: str
    rootfs: str
    fifo_fd: int                          # O_PATH fd of <root>/<id>/exec.fifo (-1 for exec)
    cgroup: Cgroup                        # the null cgroup when there is none (rootless)
    cgroup_binds: list[tuple[str, str]]   # what a "cgroup" mount shows
    new_namespaces: list[str]             # OCI types unshared
    join_namespaces: dict[str, str]       # OCI type -> path to setns into
    console_socket: Any = None           # unixsock.Socket: console socket or `run -t` sink
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    extra_env: list[str] = field(default_factory=list)
    mode: str = "init"
    seccomp: Any = None                   # pyrun.seccomp.CompiledFilter, compiled by the parent
    parent_fds: list[int] = field(default_factory=list)   # closed first thing in the child (the ID lock)
    # mounts[i] -> detached idmapped mount fd
    idmapped_mounts: dict[int, int] = field(default_factory=dict)
    # In a user namespace, the bind entries whose sources the parent opens
    # in the container's mount namespace (stage 1 asks), and those O_PATH fds.
    bind_source_indices: list[int] = field(default_factory=list)
    bind_sources: dict[int, int] = field(default_factory=dict)
    proc_fd: int = -1                     # the runtime's /proc, opened by stage 1 (linux/procfs.py)
    guard_fd: int = -1                    # stage 1 reads "go" here once the guard traces it (process/guard.py)
    trace_fd: int = -1                    # PYRUN_TRACE's file (pyrun/trace.py), -1 when not tracing

    @property
    def process(self) -> dict[str, Any]:
        return self.spec.get("process") or {}

    @property
    def linux(self) -> dict[str, Any]:
        return self.spec.get("linux") or {}

    @property
    def rootfs_names(self) -> tuple[str, ...]:
        """The rootfs's host path as mount entries may spell it (rootfs/mounts.py)."""
        from pyrun.rootfs.mounts import rootfs_names
        return rootfs_names(self.spec, self.bundle, self.rootfs)

    @property
    def in_userns(self) -> bool:
        return "user" in self.new_namespaces or "user" in self.join_namespaces
