"""What CRIU must be told about a container's mounts and namespaces: the
mounts whose source is outside the container (bind mounts, the cgroup
binds, bind-mounted devices, masks on /dev/null) are external, named by their
destination at dump and mapped back to a host source at restore; namespaces
joined by path are the caller's, kept out of the image."""
from __future__ import annotations

import os
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun.rootfs.paths import resolve_in_root

# runtime-spec namespace type -> CRIU's (and the kernel's /proc/<pid>/ns) name
NS_NAMES = {"network": "net", "pid": "pid", "mount": "mnt", "ipc": "ipc", "uts": "uts",
            "user": "user", "cgroup": "cgroup", "time": "time"}
DEFAULT_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


def is_bind(mount: dict[str, Any]) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def _real_destination(root_fd: int, destination: str) -> str:
    """CRIU names a mount by where it really is: its destination with the
    rootfs's symlinks followed as the init followed them."""
    try:
        return "/" + resolve_in_root(root_fd, destination)
    except OSError as e:        # a link loop the container made since
        from pyrun.errors import PyrunError, oserror_text
        raise PyrunError(f"mount destination {destination}: {oserror_text(e)}") from None


def external_mounts(spec: dict[str, Any], rootfs: str, binds: list[tuple[str, str]],
                    restore: bool, bundle: str = "") -> list[tuple[str, str]]:
    """ext_mnt (key, val) pairs. Dump: (mountpoint, id), the id being the
    mountpoint itself; restore: (id, host source), a relative source taken
    from `bundle` as create takes it.  `binds`: what a "cgroup" mount shows
    (Cgroup.mount_binds)."""
    pairs: list[tuple[str, str]] = []
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in spec.get("mounts") or []:
            dest = _real_destination(root_fd, m["destination"])
            if is_bind(m):
                source = os.path.join(bundle, m.get("source", ""))
                pairs.append((dest, source if restore else dest))
            elif m.get("type") in ("cgroup", "cgroup2"):
                for name, host_dir in binds:
                    sub = os.path.join(dest, name) if name else dest
                    pairs.append((sub, host_dir if restore else sub))
    finally:
        os.close(root_fd)
    devices = list(DEFAULT_DEVICES) + [d["path"] for d in (spec.get("linux") or {}).get("devices") or []]
    for path in dict.fromkeys(devices):
        pairs.append((path, path))
    return pairs


def make_mountpoints(spec: dict[str, Any], root: str, bundle: str) -> None:
    """Restore: CRIU mounts onto mount points it does not make, and the ones
    for mounts nested in a bind mount live in that bind's source, which may
    have lost them since the dump. So, in mount order, each mount point is
    made (inside the root, as the init makes them) and each bind source is
    mounted there while the later ones are made; all are unmounted after
    (runc's prepareCriuRestoreMounts). Below a tmpfs, CRIU restores the content."""
    from pyrun.linux import syscalls as s
    from pyrun.rootfs.paths import ensure_path, fd_path, open_in_root
    from pyrun.rootfs.procsafe import check_target
    entries = spec.get("mounts") or []
    tmpfs = [m["destination"].rstrip("/") + "/" for m in entries if m.get("type") == "tmpfs"]
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    bound: list[str] = []
    try:
        for m in entries:
            dest = m["destination"]
            if m.get("type") in ("cgroup", "cgroup2") or any(dest.startswith(t) for t in tmpfs):
                continue
            if not is_bind(m):
                os.close(ensure_path(root_fd, dest, directory=True))
                continue
            src_fd = os.open(os.path.join(bundle, m.get("source", "")), os.O_PATH | os.O_CLOEXEC)
            try:
                target = ensure_path(root_fd, dest, directory=os.path.isdir(fd_path(src_fd)))
                try:
                    check_target(root_fd, target, dest, "bind", src_fd)
                    s.mount(fd_path(src_fd), fd_path(target), None, s.MS_BIND | s.MS_REC)
                    bound.append(dest)
                finally:
                    os.close(target)
            finally:
                os.close(src_fd)
    finally:
        for dest in reversed(bound):
            fd = open_in_root(root_fd, dest)
            try:
                s.umount2(fd_path(fd), s.MNT_DETACH)
            finally:
                os.close(fd)
        os.close(root_fd)


def masked_files(spec: dict[str, Any], pid: int) -> list[tuple[str, str]]:
    """Dump: each masked path that is a file (a bind of /dev/null) in the running container."""
    pairs = []
    for path in (spec.get("linux") or {}).get("maskedPaths") or []:
        try:
            st = os.stat(f"/proc/{pid}/root/{path.lstrip('/')}")
        except OSError:
            continue
        import stat
        if not stat.S_ISDIR(st.st_mode):
            pairs.append((path, "/dev/null"))
    return pairs


def ext_mnt_fields(pairs: list[tuple[str, str]]) -> tuple[list[Any], ...]:
    return tuple([(1, key), (2, val)] for key, val in pairs)


def ns_key(ns_type: str) -> str:
    """CRIU's inherit-fd key for an external namespace, runc's naming."""
    return f"extRoot{NS_NAMES[ns_type].capitalize()}NS"


def joined_namespaces(spec: dict[str, Any]) -> dict[str, str]:
    return {ns["type"]: ns["path"] for ns in (spec.get("linux") or {}).get("namespaces") or []
            if ns.get("path")}
