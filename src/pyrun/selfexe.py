"""create, run and exec run from an interpreter the container cannot write.

Their forks enter the container, and a process's /proc/<pid>/exe (and a
`#!/proc/self/exe` script it execs) leads to the file it was exec'd from:
the host's Python interpreter (CVE-2019-5736 class).  The exe link can only
be set by execve, so these commands re-exec themselves once, first thing,
through a read-only handle on the same interpreter, the first that works:

- the interpreter inside a private read-only overlayfs (`fsopen`) of its
  directory over an empty detached tmpfs: the exe is an overlay inode, not
  the host file's, no copy is made, and the overlay (no upper layer)
  refuses writes in its superblock, not only by a mount flag; the dummy
  layer has no name anywhere (recent kernels, 6.15+, accept a detached
  mount as a layer);
- a detached read-only clone of its mount (`open_tree(OPEN_TREE_CLONE)` on
  /proc/self/exe, then `mount_setattr(MOUNT_ATTR_RDONLY)`): no copy, opening
  it for writing gives EROFS;
- where mounting is not allowed (rootless, old kernels): a sealed memfd copy
  (F_SEAL_WRITE|SHRINK|GROW|SEAL), which is not the host file at all.

launcher/pyrun-python.c does the first two before Python starts.  This
module imports nothing but os (and _ctypes/fcntl on the re-exec path and
for `--debug`'s report): the launcher calls it before importing the rest of
pyrun.
"""
from __future__ import annotations

import os
import sys

_NEEDS = frozenset({"create", "run", "exec"})
_VALUED = frozenset({"root", "log", "log-format", "rootless", "criu"})   # global flags taking a value
_MARK = "_PYRUN_EXE_REEXEC"       # set only across our own re-exec: stops a loop
FORCE = "PYRUN_EXE_COPY"          # "clone": skip the overlay; "memfd": skip both mounts (tests)

_SYS_OPEN_TREE, _SYS_MOUNT_SETATTR = 428, 442      # the same number on every architecture
_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
_FSOPEN_CLOEXEC, _FSMOUNT_CLOEXEC, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 1, 1, 6
_OVERLAYFS_SUPER_MAGIC = 0x794C7630
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC, _AT_EMPTY_PATH = 1, os.O_CLOEXEC, 0x1000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
_F_SEAL_WRITE = 0x8


class ExeError(Exception):
    """Neither read-only handle could be made: create/run/exec refuse to go on."""


_outcome: ExeError | None = None    # the first call's failure, reported again by main()


def command_of(argv: list[str]) -> str:
    """The command word after the global flags (argv without the program name)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            return arg
        name = arg.lstrip("-")
        if "=" not in name and name in _VALUED:
            i += 1
        i += 1
    return ""


def protected() -> bool:
    """Whether this process's exe is on a read-only mount or a write-sealed memfd."""
    try:
        if os.statvfs("/proc/self/exe").f_flag & os.ST_RDONLY:
            return True
        if not os.readlink("/proc/self/exe").startswith("/memfd:"):
            return False
        import fcntl
        fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return bool(fcntl.fcntl(fd, fcntl.F_GET_SEALS) & _F_SEAL_WRITE)
        finally:
            os.close(fd)
    except OSError:
        return False


def ensure(argv: list[str]) -> None:
    """For create/run/exec: re-exec through a read-only handle unless already on one."""
    global _outcome
    if _outcome is not None:
        raise _outcome
    if command_of(argv) not in _NEEDS:
        return
    again = os.environ.pop(_MARK, None)
    if protected():
        return
    if again:
        _outcome = ExeError("the re-executed interpreter is still writable")
        raise _outcome
    errors = []
    fd = -1
    force = os.environ.get(FORCE)
    if force not in ("clone", "memfd"):
        try:
            fd = _sealed_overlay()
        except OSError as e:
            errors.append(f"overlayfs: {os.strerror(e.errno) if e.errno else e}")
    if fd < 0 and force != "memfd":
        try:
            fd = _readonly_clone()
        except OSError as e:
            errors.append(f"read-only mount: {os.strerror(e.errno) if e.errno else e}")
    if fd < 0:
        try:
            fd = _sealed_copy()
        except OSError as e:
            errors.append(f"sealed copy: {os.strerror(e.errno) if e.errno else e}")
            _outcome = ExeError("cannot run from a read-only interpreter: " + "; ".join(errors))
            raise _outcome from None
    env = dict(os.environ)
    env[_MARK] = "1"
    try:
        os.execve(fd, sys.orig_argv, env)
    except OSError as e:
        _outcome = ExeError(f"cannot re-execute the interpreter read-only: {os.strerror(e.errno)}")
        raise _outcome from None


def method() -> str:
    """How this process's exe is sealed: "overlayfs" (a read-only overlay),
    "clone" (another read-only mount: ours, or the host's own), "memfd" or
    "" (not at all).  Looked at, not remembered (nothing a caller's
    environment could fake); for `--debug` only: statfs needs ctypes."""
    if not protected():
        return ""
    if os.readlink("/proc/self/exe").startswith("/memfd:"):
        return "memfd"
    import ctypes
    buf = ctypes.create_string_buffer(256)       # struct statfs (120 bytes); f_type is its first word
    if ctypes.CDLL(None, use_errno=True).statfs(b"/proc/self/exe", buf) != 0:
        return "clone"
    f_type = int.from_bytes(buf.raw[:ctypes.sizeof(ctypes.c_long)], sys.byteorder)
    return "overlayfs" if f_type == _OVERLAYFS_SUPER_MAGIC else "clone"


def _c():
    """_ctypes' `long` and a maker of libc functions returning it with errno (no ctypes import)."""
    import _ctypes

    class c_long(_ctypes._SimpleCData):
        _type_ = "l"

    class Func(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = c_long

    libc = _ctypes.dlopen(None, 0)
    return c_long, lambda name: Func(_ctypes.dlsym(libc, name))


def _sealed_overlay() -> int:
    """An O_PATH fd on the running interpreter inside a read-only overlayfs of
    its directory over an empty detached tmpfs (see launcher/pyrun-python.c)."""
    import _ctypes
    c_long, func = _c()
    syscall = func("syscall")

    def check(ret: int, what: str) -> int:
        if ret < 0:
            raise OSError(_ctypes.get_errno(), what)
        return ret

    def new_mount(fstype: bytes, options: dict[bytes, bytes], attrs: int) -> int:
        ctx = check(syscall(c_long(_SYS_FSOPEN), fstype, c_long(_FSOPEN_CLOEXEC)), "fsopen")
        try:
            for name, value in options.items():
                optional = name.startswith(b"?")
                if syscall(c_long(_SYS_FSCONFIG), c_long(ctx), c_long(_FSCONFIG_SET_STRING), name.lstrip(b"?"),
                           value, c_long(0)) < 0 and not optional:
                    raise OSError(_ctypes.get_errno(), "fsconfig " + name.decode())
            check(syscall(c_long(_SYS_FSCONFIG), c_long(ctx), c_long(_FSCONFIG_CMD_CREATE), None, None,
                          c_long(0)), "fsconfig create")
            return check(syscall(c_long(_SYS_FSMOUNT), c_long(ctx), c_long(_FSMOUNT_CLOEXEC), c_long(attrs)),
                         "fsmount")
        finally:
            os.close(ctx)

    path = os.readlink("/proc/self/exe")
    if not path.startswith("/"):
        raise OSError(0, f"the interpreter is {path}")
    directory, name = path.rsplit("/", 1)
    lower = (directory or "/").replace("\\", "\\\\").replace(":", "\\:")
    dummy = new_mount(b"tmpfs", {}, _MOUNT_ATTR_RDONLY)
    try:
        ovl = new_mount(b"overlay", {b"lowerdir": f"{lower}:/proc/self/fd/{dummy}".encode(), b"?xino": b"off"},
                        _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV)
    finally:
        os.close(dummy)
    try:
        return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=ovl)
    finally:
        os.close(ovl)


def _readonly_clone() -> int:
    """An O_PATH-like fd on a detached, read-only bind of the running interpreter."""
    import _ctypes
    c_long, func = _c()
    syscall = func("syscall")
    fd = syscall(c_long(_SYS_OPEN_TREE), c_long(-100), b"/proc/self/exe",
                 c_long(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC))
    if fd < 0:
        raise OSError(_ctypes.get_errno(), "open_tree")
    # struct mount_attr {u64 attr_set, attr_clr, propagation, userns_fd}
    attr = (_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV).to_bytes(8, sys.byteorder) + bytes(24)
    if syscall(c_long(_SYS_MOUNT_SETATTR), c_long(fd), b"", c_long(_AT_EMPTY_PATH), attr, c_long(32)) < 0:
        err = _ctypes.get_errno()
        os.close(fd)
        raise OSError(err, "mount_setattr")
    return fd


def _sealed_copy() -> int:
    """A memfd holding a copy of the running interpreter, sealed against any write."""
    import fcntl
    src = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.memfd_create("pyrun", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        left = os.fstat(src).st_size
        while left > 0:
            n = os.sendfile(fd, src, None, left)
            if n == 0:
                raise OSError(0, "short copy")
            left -= n
    finally:
        os.close(src)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd
