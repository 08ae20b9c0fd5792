"""config-linux.md "Cgroup ownership": hand a container with its own cgroup
namespace and a read-write cgroup mount its cgroup v2 directory.

The container's root (or whichever uid `process.user.uid` names) can then
create sub-cgroups and move its processes, as systemd inside a container
expects.  Only the directory and the files the kernel lists as delegatable
change owner (the gid is kept): the other files set the limits the
container's parent imposes, and the container must not raise them.  Never on
cgroup v1 or hybrid hosts: delegation is not safe there.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError

DELEGATE_FILE = "/sys/kernel/cgroup/delegate"
# cgroups(7): what to delegate on kernels without DELEGATE_FILE (before 4.15)
FALLBACK = ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads")


def wants_delegation(spec: dict[str, Any]) -> bool:
    """The config's part of the rule: a NEW cgroup namespace and a "cgroup"
    mount at /sys/fs/cgroup without "ro" (with or without a user namespace,
    as runc: without one the owner is process.user.uid itself)."""
    linux = spec.get("linux") or {}
    types = {ns.get("type"): ns.get("path") for ns in linux.get("namespaces") or []}
    if "cgroup" not in types or types["cgroup"]:
        return False
    for m in spec.get("mounts") or []:
        dest = m.get("destination") or ""
        if m.get("source") == "cgroup" and os.path.normpath("/" + dest.lstrip("/")) == "/sys/fs/cgroup" \
                and "ro" not in (m.get("options") or []):
            return True
    return False


def owner_uid(spec: dict[str, Any]) -> int | None:
    """The host uid `process.user.uid` maps to, when the config asks for
    delegation; None otherwise (or when the user namespace is joined by
    path and the config carries no uidMappings to read it from)."""
    if not wants_delegation(spec):
        return None
    linux = spec.get("linux") or {}
    uid = ((spec.get("process") or {}).get("user") or {}).get("uid", 0)
    if not any(ns.get("type") == "user" for ns in linux.get("namespaces") or []):
        return uid          # the host's own uids: the container's user is this uid
    mappings = linux.get("uidMappings") or []
    if not mappings:
        return None
    for m in mappings:
        if m["containerID"] <= uid < m["containerID"] + m["size"]:
            return m["hostID"] + uid - m["containerID"]
    raise ConfigError(f"process.user.uid: uid {uid} is not mapped by linux.uidMappings, "
                      "so no host user can own the container's cgroup")


def delegated_files(delegate_file: str = DELEGATE_FILE) -> tuple[str, ...]:
    """The kernel's list of files a delegatee may write, else cgroups(7)'s three."""
    try:
        with open(delegate_file) as f:
            names = f.read().split()
    except FileNotFoundError:
        return FALLBACK
    return tuple(n for n in names if "/" not in n and n not in (".", ".."))


def delegate(path: str, uid: int, delegate_file: str = DELEGATE_FILE) -> None:
    """chown the cgroup directory and its delegatable files to `uid`, gid
    unchanged.  A listed file this cgroup lacks (its controller is not
    enabled here) is skipped: the spec says that MUST NOT fail."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchown(fd, uid, -1)
        for name in delegated_files(delegate_file):
            try:
                os.chown(name, uid, -1, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
    finally:
        os.close(fd)
