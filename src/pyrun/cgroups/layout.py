"""Which cgroup hierarchies this host has, read from /proc/self/mountinfo.

v1 (legacy), v2 (unified) and hybrid (v1 controllers plus a cgroup2 mount)
are told apart by what is mounted, never guessed from paths.
"""
from __future__ import annotations

import os

from pyrun.records import dataclass

# Immutable records from pyrun.records: `state`, `start` and `delete` reach this
# module; dataclasses (with inspect) costs ~4 ms to import, collections'
# namedtuple ~1.5 ms.


@dataclass(frozen=True)
class Hierarchy:
    """key: "" for cgroup2, "cpu,cpuacct" or "name=systemd" for v1;
    root: the mount's root inside the hierarchy (usually "/")."""
    key: str
    mountpoint: str
    root: str

    @property
    def is_v2(self) -> bool:
        return self.key == ""


@dataclass(frozen=True)
class Layout:
    hierarchies: tuple[Hierarchy, ...]

    @property
    def mode(self) -> str:
        v1 = any(not h.is_v2 for h in self.hierarchies)
        v2 = any(h.is_v2 for h in self.hierarchies)
        return "hybrid" if v1 and v2 else ("v1" if v1 else "v2")


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def detect(mountinfo: str = "/proc/self/mountinfo") -> Layout:
    found: dict[str, Hierarchy] = {}
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, superopts = (right.split() + ["", "", ""])[:3]
            if fstype == "cgroup2":
                key = ""
            elif fstype == "cgroup":
                opts = [o for o in superopts.split(",")
                        if o not in ("rw", "ro") and not o.startswith(("release_agent", "clone_children", "xattr", "noprefix", "cpuset_v2_mode", "favordynmods"))]
                key = ",".join(opts)
            else:
                continue
            if key not in found:   # the first mount of a hierarchy wins
                found[key] = Hierarchy(key, _unescape(fields[4]), _unescape(fields[3]))
    return Layout(tuple(found.values()))


def own_cgroups(path: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's cgroup in each hierarchy, keyed like Hierarchy.key."""
    out: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            _num, controllers, cgpath = line.rstrip("\n").split(":", 2)
            out[controllers] = cgpath
    return out


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
        paths[h.key] = host_dir(h, rel)
    return paths


def host_dir(h: Hierarchy, rel: str) -> str:
    """The host directory of cgroup `rel` (as /proc/<pid>/cgroup names it):
    own cgroup paths are relative to the hierarchy root, mounts may show a sub-root."""
    if h.root != "/" and rel.startswith(h.root):
        rel = rel[len(h.root):] or "/"
    return os.path.join(h.mountpoint, rel.lstrip("/"))
