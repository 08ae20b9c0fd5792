"""Whether a rootless container gets a cgroup, and what happens when it cannot.

runc's behaviour: an ordinary user (or root in a user namespace) uses the
cgroup when it may create it (a delegated cgroup v2 subtree it owns);
otherwise the container runs in the caller's own cgroup, resource limits
are skipped with one warning, and only a limit the config asks for
explicitly makes create fail ("cannot set <x> limit: container could not
join or create cgroup").  An explicit cgroupsPath that cannot be created is
an error, as in runc.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups.layout import Layout, own_cgroups

# linux.resources key -> the controller runc names in its error
_CONTROLLERS = {"memory": "memory", "cpu": "cpu", "pids": "pids", "blockIO": "blkio",
                "hugepageLimits": "hugetlb", "network": "net_cls", "rdma": "rdma",
                "unified": "unified"}

WARNING = ("rootless container: no writable cgroup for it (cgroups are not delegated to "
           "this user), so it runs in the caller's cgroup and resource limits are not applied")


def plan(spec: dict[str, Any], paths: dict[str, str], layout: Layout) -> list[tuple[str, str]] | None:
    """None: create the cgroup as usual.  Otherwise the container stays in
    the caller's cgroup and this is what its "cgroup" mounts show; a config
    that needs a cgroup of its own fails here, before anything is made."""
    if writable(paths):
        return None
    error = unavailable_error(spec)
    if error:
        from pyrun.errors import PyrunError
        raise PyrunError(error)
    from pyrun import log
    log.warning(WARNING)
    return own_binds(layout)


def writable(paths: dict[str, str]) -> bool:
    """Every directory to create has a nearest existing ancestor we may
    write (a delegated subtree); an existing one must take our processes."""
    for path in paths.values():
        probe = path
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.access(probe, os.W_OK | os.X_OK):
            return False
        if probe == path and not os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
            return False
    return True


def requested_limits(spec: dict[str, Any]) -> list[str]:
    """Controllers the config sets a limit in (device rules are best effort, as runc)."""
    resources = (spec.get("linux") or {}).get("resources") or {}
    return [_CONTROLLERS[k] for k in _CONTROLLERS if resources.get(k)]


def unavailable_error(spec: dict[str, Any]) -> str | None:
    """The error for a config a cgroup-less rootless container cannot honour."""
    if (spec.get("linux") or {}).get("cgroupsPath"):
        return (f"unable to apply cgroup configuration: cgroupsPath "
                f"{spec['linux']['cgroupsPath']} is not writable by this user")
    limits = requested_limits(spec)
    if limits:
        return f"cannot set {limits[0]} limit: container could not join or create cgroup"
    return None


def own_binds(layout: Layout) -> list[tuple[str, str]]:
    """What a "cgroup" mount shows when the container stays in our cgroup."""
    own = own_cgroups()
    if layout.mode == "v2":
        h = layout.hierarchies[0]
        return [("", _host_dir(h.mountpoint, h.root, own.get("", "/")))]
    return [(os.path.basename(h.mountpoint), _host_dir(h.mountpoint, h.root, own.get(h.key, "/")))
            for h in layout.hierarchies if not h.is_v2]


def _host_dir(mountpoint: str, root: str, rel: str) -> str:
    if root != "/" and rel.startswith(root):
        rel = rel[len(root):] or "/"
    return os.path.join(mountpoint, rel.lstrip("/"))
