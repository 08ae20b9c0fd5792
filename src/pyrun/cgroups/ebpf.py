"""Device rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no devices.allow; the kernel instead runs the programs
attached to a cgroup (and its ancestors) on every mknod and device open,
with `struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor}`
in R1 (access_type: device type in the low 16 bits, BPF_DEVCG_ACC_* in the
high 16).  The program shape follows runc's devicefilter.go and crun's
ebpf.c: load the context into R2-R5, then one block per rule that jumps to
the next block on any mismatch and otherwise returns the rule's verdict,
then the default verdict.

Rule order: runc applies the rules one after another, the last matching
one wins, and an `a` rule resets everything before it to its own verdict.
So the blocks are emitted from the last rule back to the last `a` rule, and
the `a` rule's verdict is the default.  A deny rule matches when it covers
any of the requested accesses, an allow rule only when it covers all of
them (as cgroup v1 decides).
"""
from __future__ import annotations

import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:       # devices.py imports this module: annotations only, no cycle
    from pyrun.cgroups.devices import Rule

DEV_BLOCK, DEV_CHAR = 1, 2                     # BPF_DEVCG_DEV_*
ACC = {"m": 1, "r": 2, "w": 4}                 # BPF_DEVCG_ACC_*
ALL_ACCESS = 7

# opcodes (class | op | source)
_LDX_W = 0x61          # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54        # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74        # BPF_ALU | BPF_RSH | BPF_K
_MOV32_X = 0xbc        # BPF_ALU | BPF_MOV | BPF_X
_MOV32_K = 0xb4        # BPF_ALU | BPF_MOV | BPF_K
_JNE_K = 0x55          # BPF_JMP | BPF_JNE | BPF_K
_JNE_X = 0x5d          # BPF_JMP | BPF_JNE | BPF_X
_JEQ_K = 0x15          # BPF_JMP | BPF_JEQ | BPF_K
_EXIT = 0x95           # BPF_JMP | BPF_EXIT


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One `struct bpf_insn` (little-endian: dst in the low nibble)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_mask(access: str) -> int:
    mask = 0
    for ch in access:
        if ch not in ACC:
            raise ValueError(f"unknown device access {ch!r}")
        mask |= ACC[ch]
    return mask


def _block(rule: Rule) -> list[bytes]:
    """The rule's checks; each jump's offset is patched to the block's end."""
    if rule.kind not in ("c", "b"):
        raise ValueError(f"invalid device type {rule.kind!r}")
    checks: list[tuple[int, int, int, int]] = [(_JNE_K, 2, 0, DEV_CHAR if rule.kind == "c" else DEV_BLOCK)]
    pre: list[list[bytes]] = [[]]
    mask = _access_mask(rule.access)
    if mask != ALL_ACCESS:
        # R1 = requested & mask; allow needs all requested bits, deny any of them
        pre.append([_insn(_MOV32_X, 1, 3), _insn(_AND32_K, 1, imm=mask)])
        checks.append((_JNE_X, 1, 3, 0) if rule.allow else (_JEQ_K, 1, 0, 0))
    for reg, value in ((4, rule.major), (5, rule.minor)):
        if value is not None:
            if not 0 <= value < 2 ** 31:
                raise ValueError(f"invalid device number {value}")
            pre.append([])
            checks.append((_JNE_K, reg, 0, value))
    tail = [_insn(_MOV32_K, 0, imm=int(rule.allow)), _insn(_EXIT)]
    # lay out, then point every jump just past the tail
    out: list[bytes] = []
    jumps: list[tuple[int, tuple[int, int, int, int]]] = []
    for prefix, check in zip(pre, checks):
        out += prefix
        jumps.append((len(out), check))
        out.append(b"")
    end = len(out) + len(tail)
    for idx, (code, dst, src, imm) in jumps:
        out[idx] = _insn(code, dst, src, off=end - idx - 1, imm=imm)
    return out + tail


def compile_rules(rules: list[Rule]) -> bytes:
    """The program for `rules` (last match wins, `a` resets)."""
    default = False
    live: list[Rule] = []
    for rule in rules:
        if rule.kind == "a":
            default, live = rule.allow, []
        else:
            live.append(rule)
    prog = [
        _insn(_LDX_W, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF),     # R2 = device type
        _insn(_LDX_W, 3, 1, 0), _insn(_RSH32_K, 3, imm=16),         # R3 = requested access
        _insn(_LDX_W, 4, 1, 4),                                     # R4 = major
        _insn(_LDX_W, 5, 1, 8),                                     # R5 = minor
    ]
    for rule in reversed(live):
        prog += _block(rule)
    prog += [_insn(_MOV32_K, 0, imm=int(default)), _insn(_EXIT)]
    return b"".join(prog)


def attach_filter(cgroup_dir: str, rules: list[Rule]) -> None:
    """Load the program and attach it to `cgroup_dir`, replacing the ones
    attached before (as `update` needs): new first, so no gap opens."""
    from pyrun.linux import bpf
    code = compile_rules(rules)
    dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = bpf.prog_query(dirfd)
        prog = _load(code)
        try:
            try:
                bpf.prog_attach(dirfd, prog)
            except OSError as e:
                raise OSError(e.errno, f"failed to call BPF_PROG_ATTACH (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI): "
                              f"{e.strerror}") from None
        finally:
            os.close(prog)
        for prog_id in old:
            _detach_id(dirfd, prog_id)
    finally:
        os.close(dirfd)


def _load(code: bytes) -> int:
    """Kernels before 5.11 charge BPF programs to RLIMIT_MEMLOCK: on EPERM,
    retry once with it raised (runc raises it up front), then put it back so
    the container, forked from us later, does not inherit it."""
    import resource
    from pyrun.linux import bpf
    try:
        return bpf.prog_load_cgroup_device(code)
    except PermissionError as e:
        first = e
    saved = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (OSError, ValueError):
        raise first from None
    try:
        return bpf.prog_load_cgroup_device(code)
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, saved)


def _detach_id(dirfd: int, prog_id: int) -> None:
    from pyrun.linux import bpf
    fd = bpf.prog_get_fd_by_id(prog_id)
    try:
        bpf.prog_detach(dirfd, fd)
    finally:
        os.close(fd)
