"""The bpf(2) calls a cgroup device filter needs: load, attach, detach, query.

glibc has no bpf() wrapper, so this goes through syscall(2) with a zeroed
`union bpf_attr` laid out by hand (the kernel rejects unknown non-zero
bytes, so every field we do not set stays zero).  Program fds come back
O_CLOEXEC from the kernel.
"""
from __future__ import annotations

import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_BPF = {"x86_64": 321, "aarch64": 280}[os.uname().machine]

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6          # attach type
BPF_F_ALLOW_MULTI = 2
_ATTR_SIZE = 128
_LOG_SIZE = 1 << 16


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    ret = _libc.syscall(_SYS_BPF, cmd, attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def prog_load_cgroup_device(insns: bytes, license: str = "Apache") -> int:
    """Load a BPF_PROG_TYPE_CGROUP_DEVICE program; return its fd.

    A verifier rejection is reported with the verifier's log, which says
    which instruction was wrong."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8,
                     ctypes.addressof(code), ctypes.addressof(lic), 1, _LOG_SIZE, ctypes.addressof(log))
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        detail = log.value.decode(errors="replace").strip()
        raise OSError(e.errno, f"BPF_PROG_LOAD: {e.strerror}" + (f": {detail}" if detail else "")) from None


def prog_attach(target_fd: int, prog_fd: int, attach_type: int = BPF_CGROUP_DEVICE,
                flags: int = BPF_F_ALLOW_MULTI) -> None:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=IIII", attr, 0, target_fd, prog_fd, attach_type, flags)
    _bpf(BPF_PROG_ATTACH, attr)


def prog_detach(target_fd: int, prog_fd: int, attach_type: int = BPF_CGROUP_DEVICE) -> None:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=III", attr, 0, target_fd, prog_fd, attach_type)
    _bpf(BPF_PROG_DETACH, attr)


def prog_get_fd_by_id(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def prog_query(target_fd: int, attach_type: int = BPF_CGROUP_DEVICE) -> list[int]:
    """IDs of the programs attached to a cgroup directory (not inherited ones)."""
    size = 64
    while True:
        ids = (ctypes.c_uint32 * size)()
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        struct.pack_into("=IIIIQI", attr, 0, target_fd, attach_type, 0, 0, ctypes.addressof(ids), size)
        try:
            _bpf(BPF_PROG_QUERY, attr)
        except OSError as e:
            if e.errno == 28:          # ENOSPC: prog_cnt now holds the real count
                size = struct.unpack_from("=I", attr, 24)[0]
                continue
            raise
        count = struct.unpack_from("=I", attr, 24)[0]
        return list(ids[:count])
