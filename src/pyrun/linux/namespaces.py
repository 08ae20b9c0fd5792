"""OCI namespace types mapped to clone flags and /proc/<pid>/ns names.

Kept free of ctypes so the state code can name namespaces cheaply.
"""
from __future__ import annotations

# OCI type -> (clone flag, /proc/<pid>/ns entry)
NAMESPACES: dict[str, tuple[int, str]] = {
    "user": (0x10000000, "user"),
    "mount": (0x00020000, "mnt"),
    "uts": (0x04000000, "uts"),
    "ipc": (0x08000000, "ipc"),
    "network": (0x40000000, "net"),
    "cgroup": (0x02000000, "cgroup"),
    "time": (0x00000080, "time"),
    "pid": (0x20000000, "pid"),
}

# setns order: user first (it grants the rights to join the others), mount last
# among the path-joins so that the other paths are still resolved on the host.
JOIN_ORDER = ["user", "pid", "network", "ipc", "uts", "cgroup", "time", "mount"]
