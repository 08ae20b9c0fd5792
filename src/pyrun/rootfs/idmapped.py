"""Idmapped bind mounts: the `idmap`/`ridmap` options and per-mount
`uidMappings`/`gidMappings` (runtime-spec 1.2).

The kernel lets only a caller privileged over the source filesystem (for a
host filesystem: root in the initial user namespace) give a mount an id
mapping, so the parent does it before forking: `open_tree(OPEN_TREE_CLONE)`
makes a detached copy of the source, `mount_setattr(MOUNT_ATTR_IDMAP)` gives
it the mapping of a throw-away user namespace holding the mount's maps (the
container's when the mount has none), and the init later attaches the
inherited fd on its target with `move_mount`.

Mapping lines read as in a user namespace: `containerID` is the id stored on
disk, `hostID` the id the kernel (and so the container) sees.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError, PyrunError, oserror_text
from pyrun.linux import syscalls as s


def wanted(entry: dict[str, Any]) -> bool:
    opts = entry.get("options") or []
    return "idmap" in opts or "ridmap" in opts or "uidMappings" in entry or "gidMappings" in entry


def _is_bind(entry: dict[str, Any]) -> bool:
    opts = entry.get("options") or []
    return entry.get("type") == "bind" or "bind" in opts or "rbind" in opts


def mappings(entry: dict[str, Any], linux: dict[str, Any], index: int) -> tuple[list[Any], list[Any]] | str:
    """The mount's maps, or the container's: its own, or the path of the user
    namespace it joins, whose maps the mount then takes (as runc); ConfigError
    when there are none."""
    where = f"mounts[{index}] ({entry.get('destination', '')})"
    has_uid, has_gid = "uidMappings" in entry, "gidMappings" in entry
    if has_uid != has_gid:
        raise ConfigError(f"{where}: uidMappings and gidMappings must be given together")
    if not _is_bind(entry):
        raise ConfigError(f"{where}: idmapped mounts are only supported for bind mounts")
    if has_uid:
        if not entry["uidMappings"] or not entry["gidMappings"]:
            raise ConfigError(f"{where}: idmapped mount mappings must not be empty")
        return entry["uidMappings"], entry["gidMappings"]
    user_ns = next((ns for ns in linux.get("namespaces") or [] if ns.get("type") == "user"), None)
    if user_ns is not None and user_ns.get("path"):
        return user_ns["path"]
    if user_ns is None or not linux.get("uidMappings"):
        raise ConfigError(f"{where}: idmap without uidMappings/gidMappings needs the container's "
                          "own user namespace mappings")
    return linux["uidMappings"], linux.get("gidMappings") or []


def validate(spec: dict[str, Any]) -> None:
    linux = spec.get("linux") or {}
    for i, entry in enumerate(spec.get("mounts") or []):
        if wanted(entry):
            mappings(entry, linux, i)


def has_user_namespace(spec: dict[str, Any]) -> bool:
    return any(ns.get("type") == "user" for ns in (spec.get("linux") or {}).get("namespaces") or [])


def prepare(spec: dict[str, Any], bundle: str, roots: tuple[str, ...] = ()) -> dict[int, int]:
    """{mount index: detached mount fd} for every idmapped entry; not for a
    source inside the rootfs (`roots`), which exists only once the init has
    mounted the entries before it: the init asks for an idmapped copy of
    that one at its turn (clone_inside).  (Other bind sources of a user
    namespace: container/create.py _userns_binds.)"""
    linux = spec.get("linux") or {}
    out: dict[int, int] = {}
    from pyrun.rootfs.mounts import container_source
    try:
        for i, entry in enumerate(spec.get("mounts") or []):
            if container_source(entry, bundle, roots) is not None:
                continue
            if wanted(entry):
                out[i] = _detached(entry, linux, i, bundle)
    except BaseException:
        close(out)
        raise
    return out


def close(fds: dict[int, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()


def _detached(entry: dict[str, Any], linux: dict[str, Any], index: int, bundle: str) -> int:
    opts = entry.get("options") or []
    source = entry.get("source") or ""
    if not os.path.isabs(source):
        source = os.path.join(bundle, source)
    where = f"idmapped mount of {source!r} on {entry.get('destination')!r}"
    hint = "" if os.geteuid() == 0 else " (idmapped mounts of host filesystems need root)"
    try:
        tree = s.open_tree(source, recursive="rbind" in opts)
    except OSError as e:
        raise PyrunError(f"{where}: {oserror_text(e)}{hint}") from None
    try:
        userns = _userns_of(entry, linux, index)
        try:
            s.mount_setattr_idmap(tree, userns, recursive="ridmap" in opts)
        finally:
            os.close(userns)
    except OSError as e:
        os.close(tree)
        raise PyrunError(f"{where}: {oserror_text(e)}{hint}") from None
    return tree


def _userns_of(entry: dict[str, Any], linux: dict[str, Any], index: int) -> int:
    """An fd of the user namespace whose mapping the mount takes."""
    maps = mappings(entry, linux, index)
    if isinstance(maps, str):
        return os.open(maps, os.O_RDONLY | os.O_CLOEXEC)
    return userns_fd(*maps)


def clone_inside(init_pid: int, src_fd: int, entry: dict[str, Any], linux: dict[str, Any], index: int) -> int:
    """An idmapped detached copy of a source inside the container, which the
    init looked up in its root and sent as `src_fd`.

    open_tree(2) clones only a mount of the caller's own mount namespace, and
    only root over the source's filesystem may map it: a child of ours joins
    the init's mount namespace, does both, and hands the copy back."""
    where = f"idmapped mount of {entry.get('source')!r} on {entry.get('destination')!r}"
    opts = entry.get("options") or []
    from pyrun.linux import unixsock
    try:
        userns = _userns_of(entry, linux, index)
    except OSError as e:
        raise PyrunError(f"{where}: {oserror_text(e)}") from None
    ours, theirs = unixsock.socketpair()
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ours.close()
                pidfd = os.pidfd_open(init_pid)
                s.setns(pidfd, s.CLONE_NEWNS)
                tree = s.clone_mount_of(src_fd, recursive="rbind" in opts)
                s.mount_setattr_idmap(tree, userns, recursive="ridmap" in opts)
                unixsock.send_fds(theirs, b"ok", [tree])
                code = 0
            except OSError as e:
                theirs.send(oserror_text(e).encode())
            finally:
                os._exit(code)
        theirs.close()
        data, fds = unixsock.recv_fds(ours, 4096, 1)
        os.waitpid(pid, 0)
    finally:
        ours.close()
        theirs.close()
        os.close(userns)
    if data == b"ok" and len(fds) == 1:
        return fds[0]
    for fd in fds:
        os.close(fd)
    raise PyrunError(f"{where}: {data.decode(errors='replace') or 'the helper failed'}")


def userns_fd(uid_maps: list[dict[str, Any]], gid_maps: list[dict[str, Any]]) -> int:
    """An fd of a new user namespace with these maps, held by no process.

    A child unshares it and waits; we write its maps, open its ns file and
    let it go."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(hold_w)
            s.unshare(s.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(hold_r, 1)        # EOF once the parent has the namespace
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(0, "could not create a user namespace for an idmapped mount")
        for kind, maps in (("uid", uid_maps), ("gid", gid_maps)):
            lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(lines)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


def attach(fd: int, target_fd: int) -> None:
    """In the init: put the prepared mount on its (resolved) target."""
    s.move_mount_fd(fd, target_fd)


def supported() -> bool:
    """The running kernel can idmap a mount (open_tree + MOUNT_ATTR_IDMAP, 5.12+)."""
    try:
        tree = s.open_tree("/", recursive=False)
    except OSError:
        return False
    try:
        s.mount_setattr_idmap(tree, 0x7FFFFFFF, recursive=False)   # no such fd
    except OSError as e:
        import errno
        return e.errno == errno.EBADF       # it knows the attribute and wants a userns fd
    finally:
        os.close(tree)
    return True
