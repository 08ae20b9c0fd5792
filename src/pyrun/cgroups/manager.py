"""The container's cgroup: one directory per hierarchy, created before any
namespace exists, joined by the first forked stage, removed on delete.

Limits are written by `apply_resources` (resources_v1/resources_v2 do the
per-file work, imported only when a container has resources).
"""
from __future__ import annotations

import errno
import os
import time
from _signal import SIGKILL    # not signal: its enums cost every delete ~2 ms

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups.layout import Layout, detect, own_cgroups


def container_paths(cgroups_path: str | None, container_id: str,
                    layout: Layout | None = None) -> dict[str, str]:
    """Absolute directory per hierarchy, with runc's cgroupsPath rules.

    An absolute cgroupsPath is taken from each hierarchy's root; a relative
    one (and the default, the container ID) lives below this process's own
    cgroup (on pure v2 below its parent, which holds no processes).
    """
    layout = layout or detect()
    inner = cgroups_path or container_id
    own = own_cgroups()
    paths: dict[str, str] = {}
    for h in layout.hierarchies:
        if os.path.isabs(inner):
            rel = os.path.normpath(inner)
        else:
            base = own.get(h.key, "/")
            if h.is_v2 and layout.mode == "v2":
                base = os.path.dirname(base)
            rel = os.path.normpath(os.path.join(base, inner))
        # own cgroup paths are relative to the hierarchy root, mounts may show a sub-root
        if h.root != "/" and rel.startswith(h.root):
            rel = rel[len(h.root):] or "/"
        paths[h.key] = os.path.join(h.mountpoint, rel.lstrip("/"))
    return paths


class CgroupManager:
    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self._warm_pid = 0

    @property
    def mode(self) -> str:
        """v1, v2 or hybrid, from which hierarchies the container has a directory in."""
        v2 = "" in self.paths
        return ("hybrid" if len(self.paths) > 1 else "v2") if v2 else "v1"

    def create(self, owner: int | None = None) -> None:
        """Make the directories; `owner` (a host uid, from ownership.owner_uid)
        is given the v2 cgroup on pure v2 hosts only: never on v1 or hybrid."""
        if self.mode == "v2":
            _enable_controllers(os.path.dirname(self.paths[""]))
        for key, path in self.paths.items():
            os.makedirs(path, exist_ok=True)
            if "cpuset" in key.split(","):
                _inherit_cpuset(path)
        if owner is not None and self.mode == "v2":
            from pyrun.cgroups.ownership import delegate
            delegate(self.paths[""], owner)

    def controller_dirs(self) -> dict[str, str]:
        """v1 controller name -> directory ("cpu" and "cpuacct" may share one)."""
        return {name: path for key, path in self.paths.items() if key
                for name in key.split(",") if not name.startswith("name=")}

    def check_resources(self, resources: dict[str, Any] | None) -> None:
        """What runc's validator refuses before anything is forked: unified on
        v1/hybrid, an impossible memory+swap or realtime CPU on v2."""
        if not resources:
            return
        from pyrun.cgroups.cgfile import CgroupError
        if self.mode != "v2":
            if resources.get("unified"):
                from pyrun.cgroups.resources_v1 import NO_UNIFIED
                raise CgroupError(NO_UNIFIED)
            return
        from pyrun.cgroups.convert import swap_to_v2
        mem, cpu = resources.get("memory") or {}, resources.get("cpu") or {}
        swap_to_v2(mem.get("swap") or 0, mem.get("limit") or 0)
        if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
            from pyrun.cgroups.resources_v2 import NO_REALTIME
            raise CgroupError(NO_REALTIME)

    def prepare_resources(self, resources: dict[str, Any] | None) -> None:
        """Import the writers `apply_resources` will use, ahead of time."""
        if resources:
            __import__("pyrun.cgroups.resources_v2" if self.mode == "v2" else "pyrun.cgroups.resources_v1")

    def apply_resources(self, resources: dict[str, Any] | None) -> None:
        """Write every limit of `linux.resources` (devices excepted: their rules
        are set at create and `update` never changes them, as runc)."""
        if not resources:
            return
        if self.mode == "v2":
            from pyrun.cgroups import resources_v2
            resources_v2.apply(self.paths[""], resources)
        else:
            from pyrun.cgroups import resources_v1
            resources_v1.apply(self.controller_dirs(), resources, self.paths.get(""))

    def warm_join(self) -> None:
        """Start the slow part of joining a cgroup while this process goes on.

        Each write to a cgroup.procs file takes the kernel's global
        cgroup_threadgroup_rwsem for writing; the first writer after a quiet
        spell waits for an RCU grace period (5-15 ms on this VM), and runc pays
        it too.  A throwaway child that joins one of the container's own
        directories right after they are made starts that grace period while the
        parent prepares the stages; stage 1's join, some ms later, then takes
        the lock's fast path (0.4 ms).  The child writes "0" (itself), does
        nothing else and exits; `reap_warm` collects it before any limit is
        written, so it never counts against pids.max.  Memory and freezer
        directories are avoided: its exit must not be charged or frozen.
        """
        if self._warm_pid:
            return
        path = next((p for k, p in self.paths.items()
                     if not {"memory", "freezer"} & set(k.split(","))), None)
        if path is None:
            return
        pid = os.fork()
        if pid == 0:
            try:
                fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
                os.write(fd, b"0")
            except OSError:
                pass
            os._exit(0)
        self._warm_pid = pid

    def reap_warm(self) -> None:
        """Collect `warm_join`'s child.  Normally long gone; SIGKILL first in
        case it is not (a cgroup v2 directory frozen under it, or an early
        failure): it has nothing to finish."""
        pid, self._warm_pid = self._warm_pid, 0
        if pid:
            try:
                os.kill(pid, SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass

    def join(self, pid: int) -> None:
        for path in self.paths.values():
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.paths.values():
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
                    found.update(int(x) for x in f.read().split())
            except FileNotFoundError:
                continue
        return sorted(found)

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def frozen(self) -> bool:
        for key, path in self.paths.items():
            name = "cgroup.freeze" if key == "" else ("freezer.state" if "freezer" in key.split(",") else None)
            if name is None or (key == "" and len(self.paths) > 1):
                continue   # on hybrid hosts the v1 freezer is the one in use
            try:
                with open(os.path.join(path, name)) as f:
                    value = f.read().strip()
            except OSError:
                continue
            return value in ("FROZEN", "1")
        return False

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill what is left, then remove the directories (retrying on EBUSY)."""
        self.reap_warm()
        deadline = time.monotonic() + timeout
        for path in self.paths.values():
            while True:
                try:
                    _rmdir_tree(path)
                    break
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                        raise OSError(e.errno, f"unable to remove cgroup {path}: {e.strerror[:1].lower()}{e.strerror[1:]}") from None
                    self.signal_all(SIGKILL)
                    time.sleep(0.01)


def _rmdir_tree(path: str) -> None:
    """cgroup directories hold only pseudo-files: remove children first."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _rmdir_tree(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _inherit_cpuset(path: str) -> None:
    """A fresh v1 cpuset is empty and cannot hold tasks: copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        target = os.path.join(path, name)
        with open(target) as f:
            if f.read().strip():
                continue
        parent = os.path.dirname(path)
        _inherit_cpuset(parent) if os.path.exists(os.path.join(parent, name)) else None
        with open(os.path.join(parent, name)) as f:
            value = f.read().strip()
        with open(target, "w") as f:
            f.write(value)


def _enable_controllers(parent: str) -> None:
    """cgroup v2: a controller's files appear in a child only once every
    ancestor lists it in cgroup.subtree_control; enable what each level
    offers, top-down, as runc does.  A level that refuses (it holds
    processes, or is not delegated) is left as it is: the limits that need
    it then fail with the file's name."""
    chain = []
    cur = parent
    while os.path.exists(os.path.join(cur, "cgroup.controllers")):
        chain.append(cur)
        up = os.path.dirname(cur)
        if up == cur:
            break
        cur = up
    for level in reversed(chain):
        try:
            with open(os.path.join(level, "cgroup.controllers")) as f:
                offered = f.read().split()
            with open(os.path.join(level, "cgroup.subtree_control")) as f:
                enabled = set(f.read().split())
        except OSError:
            return
        for name in offered:
            if name in enabled:
                continue
            try:
                with open(os.path.join(level, "cgroup.subtree_control"), "w") as f:
                    f.write("+" + name)
            except OSError:
                pass
