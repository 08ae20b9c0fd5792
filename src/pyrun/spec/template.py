"""The starter config `pyrun spec` writes: the same container runc's would give."""
from __future__ import annotations

import os
from typing import Any

from pyrun import SPEC_VERSION

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec() -> dict[str, Any]:
    """runc's example spec; like runc's, a cgroup namespace only on a pure
    cgroup v2 host (specconv.Example: IsCgroup2UnifiedMode)."""
    namespaces = ["pid", "network", "ipc", "uts", "mount"] + (["cgroup"] if _unified_cgroup() else [])
    return {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyrun",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in namespaces],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def rootless_spec() -> dict[str, Any]:
    """runc's ToRootless: the caller mapped to root in a new user namespace, no
    network namespace, /sys replaced in place by a read-only rbind of the
    host's, uid=/gid= mount options dropped (those ids are not mapped), no
    resources."""
    spec = default_spec()
    linux = spec["linux"]
    linux.pop("resources")
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")] + [{"type": "user"}]
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    mounts = []
    for m in spec["mounts"]:
        if os.path.normpath(m["destination"]) == "/sys":
            m = {"destination": "/sys", "type": "none", "source": "/sys",
                 "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
        elif "options" in m:
            m["options"] = [o for o in m["options"] if not o.startswith(("uid=", "gid="))]
        mounts.append(m)
    spec["mounts"] = mounts
    return spec


def _unified_cgroup() -> bool:
    """/sys/fs/cgroup is itself cgroup2 (statfs magic CGROUP2_SUPER_MAGIC)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split(" - ")[1].startswith("cgroup2 ") and line.split()[4] == "/sys/fs/cgroup"
                       for line in f if " - " in line)
    except OSError:
        return False
