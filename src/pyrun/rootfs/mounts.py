"""Performing the config's `mounts` entries inside the rootfs."""
from __future__ import annotations

import errno
import os
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import oserror_text
from pyrun.linux import syscalls as s
from pyrun.rootfs import options as mount_options, procsafe
from pyrun.rootfs.paths import ensure_path, fd_path, open_in_root

_REMOUNT_KEEP = s.MS_RDONLY | s.MS_NOSUID | s.MS_NODEV | s.MS_NOEXEC | s.MS_NOATIME | \
    s.MS_NODIRATIME | s.MS_RELATIME | s.MS_STRICTATIME | s.MS_NOSYMFOLLOW


# statvfs ST_* bits that differ from their MS_* flag (calculate_f_flags in
# the kernel's fs/statfs.c); the others are equal.
_ST_TO_MS = ((0x1000, s.MS_RELATIME), (0x2000, s.MS_NOSYMFOLLOW))


def current_flags(path: str) -> int:
    """Mount flags in force on `path`."""
    st = os.statvfs(path).f_flag
    flags = st & _REMOUNT_KEEP & ~(s.MS_RELATIME | s.MS_NOSYMFOLLOW)
    for st_bit, ms_bit in _ST_TO_MS:
        if st & st_bit:
            flags |= ms_bit
    return flags


def rootfs_names(spec: dict[str, Any], bundle: str, rootfs: str) -> tuple[str, ...]:
    """The rootfs's host path as a mount entry may spell it: resolved, and as
    the config writes it (the two differ when the bundle's path has a symlink)."""
    given = (spec.get("root") or {}).get("path")
    named = os.path.normpath(os.path.join(bundle, given)) if given else rootfs
    return (rootfs,) if named == rootfs else (rootfs, named)


def below_root(path: str, roots: tuple[str, ...]) -> str | None:
    """`path` as the container names it when it is spelled inside the rootfs
    (any of the spellings in `roots`), else None: lexical, as runc."""
    path = os.path.normpath(path)
    for root in roots:
        root = root.rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            return path[len(root):] or "/"
    return None


def container_source(entry: dict[str, Any], bundle: str, roots: tuple[str, ...]) -> str | None:
    """A bind source spelled inside the rootfs names what the container's mount
    namespace has there once the entries before it are mounted (runc 1.2+
    mount order): returned as the container's path, resolved later in the
    root, never on the host; None for a host source."""
    opts = entry.get("options") or []
    if not roots or not entry.get("source") or (
            entry.get("type") != "bind" and "bind" not in opts and "rbind" not in opts):
        return None
    return below_root(os.path.join(bundle, entry["source"]), roots)


def classify(entry: dict[str, Any], detached: int = -1,
             roots: tuple[str, ...] = ()) -> tuple[str, str, mount_options.MountOptions, str]:
    """(destination, type, options, kind): what mount_entry does with `entry`,
    and what `pyrun explain` shows (kind: idmapped|bind|cgroup|remount|fresh).
    A destination spelled with the rootfs's host path in front loses it (runc)."""
    dest = entry["destination"]
    if not dest.startswith("/"):
        dest = "/" + dest           # relative destinations are read relative to "/"
    dest = below_root(dest, roots) or dest
    fstype = entry.get("type") or ""
    opts = mount_options.parse(entry.get("options") or [])
    if fstype == "bind":
        opts.flags |= s.MS_BIND
    if _read_only_later(dest, opts):
        opts.flags &= ~s.MS_RDONLY
    if detached >= 0:
        kind = "idmapped"
    elif opts.is_bind:
        kind = "bind"
    elif fstype in ("cgroup", "cgroup2"):
        kind = "cgroup"
    elif opts.flags & s.MS_REMOUNT:
        kind = "remount"
    else:
        kind = "fresh"
    return dest, fstype, opts, kind


def describe(entry: dict[str, Any], bundle: str, cgroup_binds: list[tuple[str, str]],
             detached: int = -1, roots: tuple[str, ...] = ()) -> dict[str, Any]:
    """The plan of one `mounts` entry, from classify (as mount_entry performs it)."""
    dest, fstype, opts, kind = classify(entry, detached, roots)
    source = entry.get("source") or ""
    inside = container_source(entry, bundle, roots) if kind in ("bind", "idmapped") else None
    if inside is not None:
        source = "container:" + inside
    elif kind in ("bind", "idmapped") and not os.path.isabs(source):
        source = os.path.join(bundle, source)
    elif kind == "cgroup":
        source = ",".join(host for _name, host in cgroup_binds)
    elif not source:
        source = fstype
    out: dict[str, Any] = {"do": "mount", "kind": kind, "source": source, "destination": dest,
                           "type": fstype, "flags": mount_options.flag_names(opts.flags),
                           "clear": mount_options.flag_names(opts.clear)}
    if opts.data:
        out["data"] = opts.data_string
    if opts.propagation:
        out["propagation"] = [mount_options.propagation_name(p) for p in opts.propagation]
    if opts.attr_set or opts.attr_clr:
        out["recursive_attrs"] = {"set": opts.attr_set, "clear": opts.attr_clr}
    return out


def mount_entry(root_fd: int, entry: dict[str, Any], bundle: str,
                cgroup_binds: list[tuple[str, str]], detached: int = -1,
                roots: tuple[str, ...] = (), source_fd: int = -1) -> None:
    """`detached`: an idmapped copy of the source the parent prepared (rootfs.idmapped).
    `roots`: the rootfs's host path as the config may spell it (container_source).
    `source_fd`: a host source, opened by the parent in our mount namespace (a user
    namespace's: container/create.py _userns_binds)."""
    dest, fstype, opts, kind = classify(entry, detached, roots)
    if fstype in ("proc", "sysfs") and not opts.is_bind:
        procsafe.check_ordinary_directory(root_fd, dest, fstype)
    if kind == "idmapped":
        _attach(root_fd, dest, detached, opts)
    elif kind == "bind":
        inside = container_source(entry, bundle, roots)
        if inside is not None:
            _bind_inside(root_fd, dest, inside, opts)
        else:
            _bind(root_fd, dest, entry.get("source") or "", bundle, opts, source_fd)
    elif kind == "cgroup":
        _cgroup(root_fd, dest, opts, cgroup_binds)
    elif kind == "remount":
        _remount(root_fd, dest, fstype, entry.get("source") or fstype, opts)
    else:
        try:
            _fresh(root_fd, dest, fstype, entry.get("source") or fstype, opts)
        except OSError as e:
            if fstype != "sysfs" or e.errno not in (errno.EPERM, errno.EBUSY):
                raise
            # runc's fallback: a user namespace that does not own the network
            # namespace may not mount sysfs, but may bind the host's /sys.
            opts.flags |= s.MS_BIND | s.MS_REC
            _bind(root_fd, dest, "/sys", "/", opts)


def _read_only_later(dest: str, opts: mount_options.MountOptions) -> bool:
    """A read-only /dev filesystem is mounted read-write: the devices, the
    /dev symlinks, devpts, shm and mqueue go in first; the init makes it
    read-only once the root is set up (as runc's finalizeRootfs)."""
    return os.path.normpath(dest) == "/dev" and not opts.is_bind and bool(opts.flags & s.MS_RDONLY)


def dev_read_only(mounts: list[dict[str, Any]]) -> bool:
    """Whether some entry asks for a read-only /dev filesystem (see above)."""
    for entry in mounts:
        dest = entry.get("destination") or ""
        opts = mount_options.parse(entry.get("options") or [])
        if entry.get("type") == "bind":
            opts.flags |= s.MS_BIND
        if _read_only_later(dest if dest.startswith("/") else "/" + dest, opts):
            return True
    return False


def _bind(root_fd: int, dest: str, source: str, bundle: str, opts: mount_options.MountOptions,
          given_fd: int = -1) -> None:
    if not os.path.isabs(source):
        source = os.path.join(bundle, source)
    # The given fd stays open: its owner closes it.
    src_fd = os.dup(given_fd) if given_fd >= 0 else os.open(source, os.O_PATH | os.O_CLOEXEC)
    _bind_fd(root_fd, dest, src_fd, opts)


def _bind_inside(root_fd: int, dest: str, inside: str, opts: mount_options.MountOptions) -> None:
    """A source in the container: looked up in the root (its symlinks and `..`
    never leave it), in this mount namespace, where earlier entries are mounted."""
    _bind_fd(root_fd, dest, open_in_root(root_fd, inside), opts)


def _bind_fd(root_fd: int, dest: str, src_fd: int, opts: mount_options.MountOptions) -> None:
    """Bind the object behind `src_fd` (closed here) on `dest`."""
    try:
        is_dir = os.path.isdir(fd_path(src_fd))
        target = ensure_path(root_fd, dest, directory=is_dir)
        try:
            procsafe.check_target(root_fd, target, dest, "bind", src_fd)
            s.mount(fd_path(src_fd), fd_path(target), None, s.MS_BIND | (opts.flags & s.MS_REC))
        finally:
            os.close(target)
    finally:
        os.close(src_fd)
    _finish(root_fd, dest, opts, bind=True)


def _attach(root_fd: int, dest: str, detached: int, opts: mount_options.MountOptions) -> None:
    from pyrun.rootfs.idmapped import attach
    is_dir = os.path.isdir(fd_path(detached))
    target = ensure_path(root_fd, dest, directory=is_dir)
    try:
        procsafe.check_target(root_fd, target, dest, "bind", detached)
        attach(detached, target)
    finally:
        os.close(target)
    _finish(root_fd, dest, opts, bind=True)


def _fresh(root_fd: int, dest: str, fstype: str, source: str, opts: mount_options.MountOptions) -> None:
    data = _tmpfs_data(root_fd, dest, opts.data_string) if fstype == "tmpfs" else opts.data_string
    target = ensure_path(root_fd, dest, directory=True)
    try:
        procsafe.check_target(root_fd, target, dest, fstype)
        flags = opts.flags & ~(s.MS_REMOUNT | s.MS_BIND | s.MS_REC)
        if fstype == "tmpfs" and "tmpcopyup" in opts.extensions:
            _tmpfs_copyup(root_fd, dest, target, source, flags, data)
        else:
            s.mount(source, fd_path(target), fstype, flags, data)
    finally:
        os.close(target)
    _finish(root_fd, dest, opts, bind=False)


def _tmpfs_copyup(root_fd: int, dest: str, target: int, source: str, flags: int, data: str | None) -> None:
    """The tmpfs goes over `target` read-write, the directory it now covers
    (still reachable through an fd opened before) is copied in, then the
    flags asked for are put on (as runc, which copies through a host tmpdir)."""
    from pyrun.rootfs.copyup import copy_tree
    covered = os.open(fd_path(target), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        s.mount(source, fd_path(target), "tmpfs", flags & ~s.MS_RDONLY, data)
        top = open_in_root(root_fd, dest, directory=True)
        try:
            new = os.open(fd_path(top), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                copy_tree(covered, new)
            except OSError as e:
                raise OSError(e.errno, f"tmpcopyup: failed to copy {dest}: {e.strerror or e}") from None
            finally:
                os.close(new)
            if flags & s.MS_RDONLY:
                s.mount(None, fd_path(top), None, s.MS_REMOUNT | flags)
        finally:
            os.close(top)
    finally:
        os.close(covered)


def _tmpfs_data(root_fd: int, dest: str, data: str) -> str:
    """A tmpfs over an existing directory takes its mode (setuid, setgid and
    sticky bits included) unless the options give one: runc 1.2+ (a later
    mode= in the data wins); a new mountpoint keeps tmpfs's default 1777."""
    import stat
    try:
        fd = open_in_root(root_fd, dest)
    except FileNotFoundError:
        return data
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    return f"mode={mode:04o}" + ("," + data if data else "")


def _remount(root_fd: int, dest: str, fstype: str, source: str,
             opts: mount_options.MountOptions) -> None:
    """`remount` (mount(8) -o remount): change an earlier mount's flags in place
    instead of stacking a new filesystem on it.  Nothing there yet: a fresh mount."""
    try:
        fd = open_in_root(root_fd, dest)
    except FileNotFoundError:
        _fresh(root_fd, dest, fstype, source, opts)
        return
    try:
        procsafe.check_target(root_fd, fd, dest, fstype)
        s.mount(None, fd_path(fd), fstype or None, opts.flags & ~(s.MS_BIND | s.MS_REC),
                opts.data_string)
    finally:
        os.close(fd)
    _finish(root_fd, dest, opts, bind=False)


def _finish(root_fd: int, dest: str, opts: mount_options.MountOptions, bind: bool) -> None:
    """Flags a bind mount cannot take at creation, then propagation."""
    extra = opts.flags & ~(s.MS_BIND | s.MS_REC | s.MS_REMOUNT)
    remount = bind and bool(extra or opts.clear)
    recursive = opts.attr_set or opts.attr_clr
    if not remount and not opts.propagation and not recursive:
        return
    fd = open_in_root(root_fd, dest)       # now the root of the new mount
    try:
        path = fd_path(fd)
        if remount:
            _bind_flags(path, extra, opts.clear)
        if recursive:
            s.mount_setattr_recursive(fd, opts.attr_set, opts.attr_clr)
        for prop in opts.propagation:
            s.mount(None, path, None, prop)
    finally:
        os.close(fd)


# Flags the kernel locks (MNT_LOCK_*) on mounts a less privileged user
# namespace inherits: its root may not clear them, nor change the atime mode.
_ATIME_ENUM = s.MS_NOATIME | s.MS_RELATIME | s.MS_STRICTATIME
_ATIME = _ATIME_ENUM | s.MS_NODIRATIME
_LOCKABLE = s.MS_RDONLY | s.MS_NODEV | s.MS_NOEXEC | s.MS_NOSUID | _ATIME


def _bind_flags(path: str, wanted: int, cleared: int) -> None:
    """A bind mount's options, as runc 1.2+: exactly the flags asked for (any
    option at all, a clearing one included, drops the source's others; the
    kernel keeps the atime mode unless one is named).  Where the kernel
    refuses because the source's flags are locked (a user namespace), the
    locked ones are kept, unless the entry asked to clear one or for another
    atime mode: then the mount fails rather than differ from the request."""
    try:
        s.mount(None, path, None, s.MS_BIND | s.MS_REMOUNT | wanted)
        return
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
    # A bind mount starts with its source's flags: this mount's are the source's.
    have = current_flags(path)
    if not have & _ATIME_ENUM:
        have |= s.MS_STRICTATIME        # not reported by statfs: the absence of the others
    locked = have & _LOCKABLE
    if locked & cleared:
        raise OSError(errno.EPERM, "cannot clear locked flags "
                      f"{','.join(mount_options.flag_names(locked & cleared))}: operation not permitted")
    if wanted & _ATIME and wanted & _ATIME != have & _ATIME:
        # Kernel quirks would otherwise turn the request silently into the
        # source's mode (MS_STRICTATIME overrides the others; MS_NOATIME
        # overrides MS_RELATIME).
        raise OSError(errno.EPERM, "cannot change locked atime flags "
                      f"{','.join(mount_options.flag_names(have & _ATIME))}: operation not permitted")
    try:
        s.mount(None, path, None, s.MS_BIND | s.MS_REMOUNT | wanted | locked)
    except OSError as e:
        raise OSError(e.errno, f"remount with locked flags {','.join(mount_options.flag_names(locked))} "
                      f"re-applied: {oserror_text(e)}") from None


def _cgroup(root_fd: int, dest: str, opts: mount_options.MountOptions,
            cgroup_binds: list[tuple[str, str]]) -> None:
    """Show the container its own cgroups: a bind of each of its directories.

    cgroup_binds is [(name below dest or "" for dest itself, host directory)].
    With v1 hierarchies a tmpfs at dest holds one directory per hierarchy.
    """
    sub_opts = mount_options.MountOptions(flags=s.MS_BIND | opts.flags, clear=opts.clear)
    if len(cgroup_binds) == 1 and cgroup_binds[0][0] == "":
        _bind(root_fd, dest, cgroup_binds[0][1], "/", sub_opts)
        return
    tmpfs = mount_options.MountOptions(flags=opts.flags & ~s.MS_RDONLY, data=["mode=755"])
    _fresh(root_fd, dest, "tmpfs", "tmpfs", tmpfs)
    for name, host_dir in cgroup_binds:
        _bind(root_fd, os.path.join(dest, name), host_dir, "/", sub_opts)
        if "," in name:   # co-mounted controllers: cpu -> cpu,cpuacct
            parent = open_in_root(root_fd, dest, directory=True)
            try:
                for alias in name.split(","):
                    if alias != name:
                        try:
                            os.symlink(name, alias, dir_fd=parent)
                        except FileExistsError:
                            pass
            finally:
                os.close(parent)
    for prop in opts.propagation:
        fd = open_in_root(root_fd, dest)
        try:
            s.mount(None, fd_path(fd), None, prop)
        finally:
            os.close(fd)
