"""Thin ctypes wrappers for the Linux calls the stdlib lacks.

Only the container-creating paths import this module (ctypes costs a few
milliseconds of start-up), so `state`, `kill`, `delete` and `list` never pay
for it.  Every wrapper raises OSError with errno and the path involved, like
the os module does.
"""
from __future__ import annotations

import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)

# x86_64 and aarch64 syscall numbers (generic table) for calls glibc may lack.
_MACHINE = os.uname().machine
_SYS = {
    "x86_64": {"pidfd_getfd": 438, "keyctl": 250, "pivot_root": 155, "setns": 308, "unshare": 272, "capget": 125,
               "capset": 126, "openat2": 437, "close_range": 436,
               "mount_setattr": 442, "open_tree": 428, "move_mount": 429,
               "fsopen": 430, "fsconfig": 431, "fsmount": 432},
    "aarch64": {"pidfd_getfd": 438, "keyctl": 219, "pivot_root": 41, "setns": 268, "unshare": 97, "capget": 90,
                "capset": 91, "openat2": 437, "close_range": 436,
                "mount_setattr": 442, "open_tree": 428, "move_mount": 429,
                "fsopen": 430, "fsconfig": 431, "fsmount": 432},
}[_MACHINE]

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MS_PROPAGATION = MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE
MNT_DETACH = 0x2

# clone(2) namespace flags
CLONE_NEWTIME = 0x80
CLONE_NEWNS = 0x20000
CLONE_NEWCGROUP = 0x2000000
CLONE_NEWUTS = 0x4000000
CLONE_NEWIPC = 0x8000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_NAME = 15
PR_SET_PTRACER = 0x59616d61    # Yama: who may trace us (EINVAL without Yama)

# openat2 resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

CLOSE_RANGE_CLOEXEC = 1 << 2


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        text = os.strerror(err)
        raise OSError(err, f"{what}: {text[:1].lower()}{text[1:]}", path)
    return ret


def _b(path: str | bytes | None) -> bytes | None:
    if path is None:
        return None
    return os.fsencode(path)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2); `target` is usually a /proc/self/fd/N magic link."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags),
                       _b(data)), "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS["pivot_root"], _b(new_root), _b(put_old)), "pivot_root", new_root)


def unshare(flags: int) -> None:
    _check(_libc.syscall(_SYS["unshare"], ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.syscall(_SYS["setns"], fd, nstype), "setns")


AT_FDCWD = -100
AT_EACCESS = 0x200


def eaccess(path: str, mode: int) -> int:
    """faccessat(mode, AT_EACCESS): 0 or the errno, not an exception (the
    caller tells "denied" from "the call is refused", as Go's LookPath does)."""
    if _libc.faccessat(AT_FDCWD, _b(path), mode, AT_EACCESS) == 0:
        return 0
    return ctypes.get_errno()


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), "prctl")


# ptrace(2), for the guard that holds pyrun's own processes (process/guard.py)
PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_GETSIGINFO = 0x4202
PTRACE_SEIZE = 0x4206
PTRACE_LISTEN = 0x4208
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_STOP = 128


def ptrace(request: int, pid: int, data: int = 0) -> None:
    """ptrace(2) for the requests that take no address (seize, cont, detach, listen)."""
    _check(_libc.ptrace(ctypes.c_long(request), ctypes.c_long(pid), None, ctypes.c_void_p(data)),
           "ptrace")


def ptrace_si_code(pid: int) -> int:
    """si_code of the signal a tracee is stopped for (PTRACE_GETSIGINFO):
    > 0 when the kernel raised it (a fault), <= 0 when someone sent it."""
    info = ctypes.create_string_buffer(128)
    _check(_libc.ptrace(ctypes.c_long(PTRACE_GETSIGINFO), ctypes.c_long(pid), None, info), "ptrace")
    return int.from_bytes(info.raw[8:12], "little", signed=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): resolve `path` under `dirfd` with the RESOLVE_* scoping rules."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _check(_libc.syscall(_SYS["openat2"], dirfd, _b(path), ctypes.byref(how),
                                ctypes.sizeof(how)), "openat2", path)


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= first close-on-exec (CVE-2024-21626: nothing leaks)."""
    _check(_libc.syscall(_SYS["close_range"], ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                         ctypes.c_uint(CLOSE_RANGE_CLOEXEC)), "close_range")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000


def mount_setattr_recursive(fd: int, attr_set: int, attr_clr: int) -> None:
    """mount_setattr(2) on the mount at `fd` and every mount below it."""
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    _check(_libc.syscall(_SYS["mount_setattr"], fd, b"", _AT_EMPTY_PATH | _AT_RECURSIVE,
                         ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")


# open_tree(2) / move_mount(2) / MOUNT_ATTR_IDMAP: idmapped bind mounts
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_SYMLINKS = 0x10
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_IDMAP = 0x100000


def open_tree(path: str, recursive: bool) -> int:
    """A detached copy of the mount tree at `path` (one mount, or all below it)."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(_SYS["open_tree"], AT_FDCWD, _b(path), ctypes.c_uint(flags)),
                  "open_tree", path)


def clone_mount_of(fd: int, recursive: bool = False) -> int:
    """A detached bind mount of exactly the file or directory behind `fd`
    (open_tree(2) with AT_EMPTY_PATH): no path is looked up, nothing can be swapped."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | _AT_EMPTY_PATH | (_AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(_SYS["open_tree"], fd, b"", ctypes.c_uint(flags)), "open_tree")


def move_mount_to(from_fd: int, target: str) -> None:
    """Attach the detached mount `from_fd` at `target` (symlinks followed, as mount(2))."""
    _check(_libc.syscall(_SYS["move_mount"], from_fd, b"", AT_FDCWD, _b(target),
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS)), "move_mount", target)


def mount_setattr_idmap(fd: int, userns_fd: int, recursive: bool) -> None:
    """Give the detached mount at `fd` the id mapping of the user namespace `userns_fd`."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    _check(_libc.syscall(_SYS["mount_setattr"], fd, b"", _AT_EMPTY_PATH | (_AT_RECURSIVE if recursive else 0),
                         ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")


def move_mount_fd(from_fd: int, to_fd: int) -> None:
    """Attach the detached mount `from_fd` on the directory or file `to_fd`."""
    _check(_libc.syscall(_SYS["move_mount"], from_fd, b"", to_fd, b"",
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)), "move_mount")


# fsopen(2) / fsconfig(2) / fsmount(2): a new filesystem instance as a detached mount
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8


def fsmount_new(fstype: str, options: dict[str, str], attrs: int) -> int:
    """A new instance of `fstype` with string `options`, as a detached mount
    with MOUNT_ATTR_* `attrs`: the fd of its root, attached nowhere."""
    fs = _check(_libc.syscall(_SYS["fsopen"], _b(fstype), ctypes.c_uint(_FSOPEN_CLOEXEC)), "fsopen", fstype)
    try:
        for key, value in options.items():
            _check(_libc.syscall(_SYS["fsconfig"], fs, ctypes.c_uint(_FSCONFIG_SET_STRING), _b(key), _b(value), 0),
                   f"fsconfig {key}={value}")
        _check(_libc.syscall(_SYS["fsconfig"], fs, ctypes.c_uint(_FSCONFIG_CMD_CREATE), None, None, 0),
               "fsconfig create")
        return _check(_libc.syscall(_SYS["fsmount"], fs, ctypes.c_uint(_FSMOUNT_CLOEXEC), ctypes.c_uint(attrs)),
                      "fsmount")
    finally:
        os.close(fs)


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """A duplicate (close-on-exec) of `target_fd` of the process behind `pidfd`."""
    return _check(_libc.syscall(_SYS["pidfd_getfd"], pidfd, target_fd, 0), "pidfd_getfd")


KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    """A fresh session keyring, so containers do not share the host's keys."""
    return _check(_libc.syscall(_SYS["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, name.encode()),
                  "keyctl")


_CAP_V3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) with 64-bit masks (version 3 header, two 32-bit data words)."""
    header = struct.pack("Ii", _CAP_V3, 0)
    lo = 0xFFFFFFFF
    data = struct.pack("6I", effective & lo, permitted & lo, inheritable & lo,
                       effective >> 32, permitted >> 32, inheritable >> 32)
    hbuf = ctypes.create_string_buffer(header, len(header))
    dbuf = ctypes.create_string_buffer(data, len(data))
    _check(_libc.syscall(_SYS["capset"], hbuf, dbuf), "capset")


def last_cap() -> int:
    """Highest capability number the running kernel knows (the host's /proc:
    not for a stage, whose /proc may be the container's; see linux/procfs.py)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def fstatfs_type(fd: int) -> int:
    """f_type of fstatfs(2): which filesystem `fd` lives on (e.g. PROC_SUPER_MAGIC)."""
    buf = ctypes.create_string_buffer(120)      # struct statfs; f_type is its first word
    _check(_libc.fstatfs(fd, buf), "fstatfs")
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


# seccomp(2): the container init loads a filter the parent compiled to BPF.
_SECCOMP_NR = {"x86_64": 317, "aarch64": 277}[_MACHINE]
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(bpf: bytes | None, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER): the listener fd with NEW_LISTENER, else 0.

    `bpf` None passes a NULL program, which probes whether the kernel knows
    `flags` (EFAULT: it does; EINVAL: it does not)."""
    if bpf is None:
        return _check(_libc.syscall(_SECCOMP_NR, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags),
                                    None), "seccomp")
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    return _check(_libc.syscall(_SECCOMP_NR, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags),
                                ctypes.byref(prog)), "seccomp")
