"""create, run and exec run from an interpreter the container cannot write.

Their forks enter the container, and a process's /proc/<pid>/exe (and a
`#!/proc/self/exe` script it execs) leads to the file it was exec'd from:
the host's Python interpreter (CVE-2019-5736 class).  The exe link can only
be set by execve, so these commands re-exec themselves once, first thing,
through a read-only handle on the same interpreter:

- a detached read-only clone of its mount (`open_tree(OPEN_TREE_CLONE)` on
  /proc/self/exe, then `mount_setattr(MOUNT_ATTR_RDONLY)`): no copy, opening
  it for writing gives EROFS;
- where mounting is not allowed (rootless, old kernels): a sealed memfd copy
  (F_SEAL_WRITE|SHRINK|GROW|SEAL), which is not the host file at all.

This module imports nothing but os (and _ctypes/fcntl on the re-exec path):
the launcher calls it before importing the rest of pyrun.
"""
from __future__ import annotations

import os
import sys

_NEEDS = frozenset({"create", "run", "exec"})
_VALUED = frozenset({"root", "log", "log-format", "rootless", "criu"})   # global flags taking a value
_MARK = "_PYRUN_EXE_REEXEC"       # set only across our own re-exec: stops a loop
FORCE = "PYRUN_EXE_COPY"          # "memfd": skip the mount clone (tests, hosts that refuse it)

_SYS_OPEN_TREE, _SYS_MOUNT_SETATTR = 428, 442      # the same number on every architecture
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
    if os.environ.get(FORCE) != "memfd":
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


def _readonly_clone() -> int:
    """An O_PATH-like fd on a detached, read-only bind of the running interpreter."""
    import _ctypes

    class c_long(_ctypes._SimpleCData):
        _type_ = "l"

    class Func(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = c_long

    syscall = Func(_ctypes.dlsym(_ctypes.dlopen(None, 0), "syscall"))
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
