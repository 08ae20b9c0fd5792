"""The container's cgroup: one directory per hierarchy, created before any
namespace exists, joined by the first forked stage, removed on delete.

Resource limits are applied elsewhere; this module only owns membership and
lifetime, which every command needs.
"""
from __future__ import annotations

import errno
import os
import time
from _signal import SIGKILL    # not signal: its enums cost every delete ~2 ms

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

    def create(self) -> None:
        for key, path in self.paths.items():
            os.makedirs(path, exist_ok=True)
            if "cpuset" in key.split(","):
                _inherit_cpuset(path)

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
