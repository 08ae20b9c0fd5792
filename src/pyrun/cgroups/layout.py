"""Which cgroup hierarchies this host has, read from /proc/self/mountinfo.

v1 (legacy), v2 (unified) and hybrid (v1 controllers plus a cgroup2 mount)
are told apart by what is mounted, never guessed from paths.
"""
from __future__ import annotations

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
