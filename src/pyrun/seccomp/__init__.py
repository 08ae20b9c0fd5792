"""linux.seccomp: compiled to BPF by the parent, loaded by the container init.

The parent (`pyrun create`, before it forks) builds the filter with libseccomp
through pyseccomp and exports the BPF program; the init inherits the bytes
through fork and hands them to seccomp(2) itself.  So the init never imports
pyseccomp or libseccomp, and the few steps it runs after the load make only
the system calls of a tiny Python path (see load()).

Behaviour follows runc: syscall names this libseccomp does not know are
skipped, rules whose action equals the default action are dropped (libseccomp
refuses them), and several conditions on the same argument become separate
rules (libseccomp cannot AND two comparisons of one argument).
"""
from __future__ import annotations

import errno
import os
import struct
from pyrun.records import dataclass   # not dataclasses: ~4 ms of imports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError, PyrunError, strerror
from pyrun.linux import syscalls     # here, not in load(): the init has left the host's files

FIELD = "linux.seccomp"

_FLAG_NEW_LISTENER = syscalls.SECCOMP_FILTER_FLAG_NEW_LISTENER
_FLAG_SPEC_ALLOW = syscalls.SECCOMP_FILTER_FLAG_SPEC_ALLOW
_FLAG_WAIT_KILLABLE_RECV = syscalls.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
# The names linux.seccomp.flags may hold and the bits each passes to seccomp(2).
# TSYNC is accepted and contributes nothing, as in runc: the init that loads
# the filter is single-threaded, so there are no other threads to synchronise.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 0,
    "SECCOMP_FILTER_FLAG_LOG": syscalls.SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": syscalls.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": _FLAG_WAIT_KILLABLE_RECV,
}

# libseccomp's action values (seccomp.h); ERRNO and TRACE carry 16 bits of data.
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_NOTIFY = 0x7FC00000
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,            # KILL_THREAD, as libseccomp's SCMP_ACT_KILL
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": _ACT_ERRNO,
    "SCMP_ACT_TRACE": _ACT_TRACE,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": _ACT_NOTIFY,
}

OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
             "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

# AUDIT_ARCH_* tokens (linux/audit.h): the ELF machine plus 64-bit / little-endian bits.
_B64, _LE, _N32 = 0x80000000, 0x40000000, 0x20000000
ARCHES = {
    "SCMP_ARCH_X86": 3 | _LE,
    "SCMP_ARCH_X86_64": 62 | _B64 | _LE,
    "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE,
    "SCMP_ARCH_AARCH64": 183 | _B64 | _LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _B64,
    "SCMP_ARCH_MIPS64N32": 8 | _B64 | _N32,
    "SCMP_ARCH_MIPSEL": 8 | _LE,
    "SCMP_ARCH_MIPSEL64": 8 | _B64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _B64 | _LE | _N32,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _B64,
    "SCMP_ARCH_PPC64LE": 21 | _B64 | _LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _B64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _B64,
    "SCMP_ARCH_RISCV64": 243 | _B64 | _LE,
    "SCMP_ARCH_LOONGARCH64": 258 | _B64 | _LE,
    "SCMP_ARCH_M68K": 4,
    "SCMP_ARCH_SH": 42 | _LE,
    "SCMP_ARCH_SHEB": 42,
}

# The init hands the listener fd to the parent with sendmsg(2) after the load:
# were that call held for an agent, the agent would never get the fd.
_NOTIFY_FORBIDDEN = ("write",)   # the init announces the listener fd with write(2)

_BPF_MAXINSNS = 4096        # the kernel refuses longer programs
_MAX_ARGS = 6


@dataclass(frozen=True)
class CompiledFilter:
    """What the init needs to load the filter: plain data, inherited through fork."""
    bpf: bytes                          # struct sock_filter[], 8 bytes per instruction
    flags: int                          # seccomp(2) SECCOMP_FILTER_FLAG_* bits
    listener_path: str | None = None
    listener_metadata: str | None = None

    @property
    def notify(self) -> bool:
        return bool(self.flags & _FLAG_NEW_LISTENER)


def compile_filter(cfg: dict[str, Any]) -> CompiledFilter:
    """linux.seccomp -> BPF, in the parent; every config error names its field."""
    try:
        import pyseccomp
    except (ImportError, RuntimeError) as e:     # RuntimeError: libseccomp.so not found
        raise PyrunError(f"{FIELD}: seccomp is not supported: {e}") from None

    default = _action(cfg.get("defaultAction"), cfg.get("defaultErrnoRet"),
                      f"{FIELD}.defaultAction", f"{FIELD}.defaultErrnoRet")
    if default == _ACT_NOTIFY:
        raise ConfigError(f"{FIELD}.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")
    try:
        filt = pyseccomp.SyscallFilter(default)
    except OSError as e:
        raise ConfigError(f"{FIELD}.defaultAction: {strerror(e.errno)}") from None
    # The binding defaults to no_new_privs on load.  We load the exported
    # program ourselves, so libseccomp never acts on it, but keep it off so the
    # filter says what runs: noNewPrivileges alone decides.
    filt.set_attr(pyseccomp.Attr.CTL_NNP, 0)
    try:                        # a binary tree of syscalls: long profiles run faster
        filt.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass
    _add_arches(filt, cfg.get("architectures") or [])

    rules = cfg.get("syscalls") or []
    path = cfg.get("listenerPath") or None
    wants_notify = any(r.get("action") == "SCMP_ACT_NOTIFY" for r in rules)
    if wants_notify and not path:
        raise ConfigError(f"{FIELD}.listenerPath: SCMP_ACT_NOTIFY needs a listenerPath to send the seccomp fd to")
    notify = False          # a listener only when a NOTIFY rule made it into the filter
    for i, rule in enumerate(rules):
        notify |= _add_rule(pyseccomp, filt, rule, default, f"{FIELD}.syscalls[{i}]")
    flags = _flags(cfg.get("flags"), notify)
    bpf = _enosys_stub(pyseccomp, cfg, default) + _export(filt)
    if len(bpf) // 8 > _BPF_MAXINSNS:
        raise ConfigError(f"{FIELD}: the filter compiles to {len(bpf) // 8} BPF instructions, "
                          f"more than the kernel's limit of {_BPF_MAXINSNS}")
    return CompiledFilter(bpf, flags, path, cfg.get("listenerMetadata") if path else None)


def load(f: CompiledFilter) -> int:
    """Install the filter on the calling thread: the listener fd, or -1.

    Runs in the container init; everything it touches is already imported."""
    fd = syscalls.seccomp_set_filter(f.bpf, f.flags)
    return fd if f.notify else -1


# --- compiling -----------------------------------------------------------------

def _action(name: Any, errno_ret: Any, where: str, errno_where: str) -> int:
    """An action name and its optional errno as libseccomp's 32-bit action value."""
    if name not in ACTIONS:
        raise ConfigError(f"{where}: unknown seccomp action {name!r}")
    value = ACTIONS[name]
    if value in (_ACT_ERRNO, _ACT_TRACE):
        ret = errno.EPERM if errno_ret is None else errno_ret
        if not isinstance(ret, int) or not 0 <= ret <= 0xFFFF:
            raise ConfigError(f"{errno_where}: must be an integer between 0 and 65535, got {ret!r}")
        return value | ret
    if errno_ret is not None:
        raise ConfigError(f"{errno_where}: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno, not {name}")
    return value


def _add_arches(filt: Any, names: list[Any]) -> None:
    for i, name in enumerate(names):
        where = f"{FIELD}.architectures[{i}]"
        if name not in ARCHES:
            raise ConfigError(f"{where}: unknown architecture {name!r}")
        try:
            filt.add_arch(ARCHES[name])
        except OSError as e:
            if e.errno != errno.EEXIST:        # the native architecture is always there
                raise ConfigError(f"{where}: {name} is not supported by this libseccomp") from None


def _add_rule(pyseccomp: Any, filt: Any, rule: dict[str, Any], default: int, where: str) -> bool:
    """Add one syscalls[] entry; True when its action is SCMP_ACT_NOTIFY."""
    action = _action(rule.get("action"), rule.get("errnoRet"), f"{where}.action", f"{where}.errnoRet")
    names = rule.get("names") or []
    conditions = [_condition(pyseccomp, arg, f"{where}.args[{j}]")
                  for j, arg in enumerate(rule.get("args") or [])]
    if action == _ACT_NOTIFY:
        for name in names:
            if name in _NOTIFY_FORBIDDEN:
                raise ConfigError(f"{where}: SCMP_ACT_NOTIFY cannot be used for the {name} syscall")
    if action == default:
        return False
    # Two comparisons of one argument cannot be ANDed by libseccomp: as runc
    # does, such a rule becomes one rule per condition.
    indexes = [c[0] for c in conditions]
    groups = [conditions] if len(set(indexes)) == len(indexes) else [[c] for c in conditions]
    added = False
    for name in names:
        nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, str(name))
        if nr == -1:            # __NR_SCMP_ERROR: unknown to this libseccomp, skip like runc
            continue
        for group in groups:
            args = [pyseccomp.Arg(*c) for c in group]
            try:
                filt.add_rule(action, nr, *args)
            except OSError as e:
                raise ConfigError(f"{where}: cannot add a rule for {name}: {strerror(e.errno)}") from None
        added = True
    return added and action == _ACT_NOTIFY


def _condition(pyseccomp: Any, arg: dict[str, Any], where: str) -> tuple[int, int, int, int]:
    index = arg.get("index")
    if not isinstance(index, int) or not 0 <= index < _MAX_ARGS:
        raise ConfigError(f"{where}.index: must be between 0 and {_MAX_ARGS - 1}, got {index!r}")
    op = arg.get("op")
    if op not in OPERATORS:
        raise ConfigError(f"{where}.op: unknown seccomp operator {op!r}")
    values = []
    for key in ("value", "valueTwo"):
        v = arg.get(key, 0)
        if not isinstance(v, int) or not 0 <= v < 2**64:
            raise ConfigError(f"{where}.{key}: must be a uint64, got {v!r}")
        values.append(v)
    return index, OPERATORS[op], values[0], values[1]


def _flags(names: list[Any] | None, notify: bool) -> int:
    """linux.seccomp.flags as seccomp(2) bits, checked against the running kernel.

    Absent (or null), as runc 1.3+: SPEC_ALLOW where the kernel knows it, so a
    filter does not force the speculative-store-bypass mitigation on the
    container (which costs performance); an explicit [] means no flags."""
    if names is None:
        flags = _FLAG_SPEC_ALLOW if _kernel_has(_FLAG_SPEC_ALLOW) else 0
    else:
        flags = 0
        for i, name in enumerate(names):
            if name not in FLAGS:
                raise ConfigError(f"{FIELD}.flags[{i}]: unknown seccomp flag {name!r}")
            flags |= FLAGS[name]
    if notify:
        flags |= _FLAG_NEW_LISTENER
    else:                               # the kernel takes it only together with a listener
        flags &= ~_FLAG_WAIT_KILLABLE_RECV
    if flags & _FLAG_WAIT_KILLABLE_RECV and not _kernel_has(_FLAG_WAIT_KILLABLE_RECV | _FLAG_NEW_LISTENER):
        flags &= ~_FLAG_WAIT_KILLABLE_RECV      # a hardening the kernel predates (< 5.19)
    for name, bit in FLAGS.items():
        if flags & bit and bit != _FLAG_WAIT_KILLABLE_RECV and not _kernel_has(bit):
            raise ConfigError(f"{FIELD}.flags: {name} is not supported by this kernel")
    return flags


def _kernel_has(flag: int) -> bool:
    """A NULL program gets EFAULT when the kernel knows `flag`, EINVAL when not."""
    try:
        syscalls.seccomp_set_filter(None, flag)
    except OSError as e:
        return e.errno != errno.EINVAL
    return True


# --- the -ENOSYS stub ------------------------------------------------------------
#
# A profile lists the syscalls its author knew.  A newer syscall (a number
# above every one the profile names) would get the default action, typically
# EPERM, and programs take EPERM as "forbidden" where ENOSYS would have made
# them fall back to an older call (clone3 -> clone, openat2 -> openat).  runc
# (libcontainer/seccomp/patchbpf) therefore puts a stub in front of the
# filter: per architecture, a syscall number above the largest the profile
# names returns ENOSYS.  Same rule here, assembled our own way.

_ERRNO_ENOSYS = _ACT_ERRNO | errno.ENOSYS
_PERMISSIVE = (ACTIONS["SCMP_ACT_ALLOW"], ACTIONS["SCMP_ACT_LOG"])
_X32_BIT = 0x40000000                   # x32 syscalls on AUDIT_ARCH_X86_64 carry it
_S390 = (ARCHES["SCMP_ARCH_S390"], ARCHES["SCMP_ARCH_S390X"])
# classic BPF opcodes (linux/bpf_common.h) and struct sock_filter
_LD_ABS_W, _JA, _JEQ, _JGT, _JSET, _RET = 0x20, 0x05, 0x15, 0x25, 0x45, 0x06
_INSN = struct.Struct("=HBBI")


def _enosys_stub(pyseccomp: Any, cfg: dict[str, Any], default: int) -> bytes:
    """The instructions runc prepends to the filter, as bytes (b"" when none).

    No stub when the default action already lets unknown syscalls through
    (ALLOW, LOG, TRACE: a tracer handles ENOSYS itself) or already returns
    ENOSYS."""
    if default in _PERMISSIVE or default & 0xFFFF0000 == _ACT_TRACE or default == _ERRNO_ENOSYS:
        return b""
    names = {str(n) for rule in cfg.get("syscalls") or [] for n in rule.get("names") or []}
    tokens = {ARCHES[a] for a in cfg.get("architectures") or []}
    tokens.add(pyseccomp.system_arch())      # as current runc: the native one always
    largest: dict[int, dict[int, int]] = {}  # audit arch -> {libseccomp arch token: largest nr}
    for token in sorted(tokens):
        numbers = [pyseccomp.resolve_syscall(token, n) for n in names]
        top = max((nr for nr in numbers if nr >= 0), default=0)  # < 0: unknown there, or a pseudo-syscall
        if top:
            audit = ARCHES["SCMP_ARCH_X86_64"] if token == ARCHES["SCMP_ARCH_X32"] else token
            largest.setdefault(audit, {})[token] = top
    return _assemble_stub(largest) if largest else b""


def _assemble_stub(largest: dict[int, dict[int, int]]) -> bytes:
    """load arch; per arch: load nr, nr > largest -> ENOSYS, else the filter.

    Jump targets are written as "enosys", "filter", "next" (the next arch's
    test) or "+n" (n instructions on), and made relative at the end; the
    stub is far shorter than the 255 instructions a conditional jump skips."""
    amd64, x32 = ARCHES["SCMP_ARCH_X86_64"], ARCHES["SCMP_ARCH_X32"]
    code: list[tuple[int, str, str, int]] = [(_LD_ABS_W, "", "", 4)]     # seccomp_data.arch
    nexts: list[int] = []                   # per instruction: where its "next" is
    for audit, tops in largest.items():
        block = [(_JEQ, "+1", "next", audit), (_LD_ABS_W, "", "", 0)]   # seccomp_data.nr
        if audit in _S390:      # setup(2), nr 0, multiplexes numbers the kernel does not know
            block.append((_JEQ, "enosys", "+1", 0))
        if audit == amd64:      # two ABIs on one audit arch, told apart by the x32 bit
            to_x32 = ("+2" if amd64 in tops else "+1") if x32 in tops else "filter"
            block.append((_JSET, to_x32, "+1" if amd64 in tops else "filter", _X32_BIT))
            block += [(_JGT, "enosys", "filter", tops[t]) for t in (amd64, x32) if t in tops]
        else:
            block.append((_JGT, "enosys", "filter", tops[audit]))
        code += block
        nexts += [len(code)] * len(block)
    code += [(_JA, "", "", 1),                      # an arch the stub does not know: the filter
             (_RET, "", "", _ERRNO_ENOSYS)]
    labels = {"enosys": len(code) - 1, "filter": len(code)}
    out = bytearray()
    for pc, (op, jt, jf, k) in enumerate(code):
        offsets = [0, 0]
        if op in (_JEQ, _JGT, _JSET):
            for i, target in enumerate((jt, jf)):
                dest = (pc + int(target[1:]) if target[0] == "+" else
                        nexts[pc - 1] if target == "next" else labels[target])
                offsets[i] = dest - pc - 1
                assert 0 <= offsets[i] <= 255, (pc, target)
        out += _INSN.pack(op, offsets[0], offsets[1], k)
    return bytes(out)


def _export(filt: Any) -> bytes:
    """The BPF program as bytes (a memfd, so no size can block a pipe)."""
    fd = os.memfd_create("pyrun-seccomp", os.MFD_CLOEXEC)
    try:
        filt.export_bpf(_Fileno(fd))
        size = os.lseek(fd, 0, os.SEEK_CUR)
        return os.pread(fd, size, 0)
    except OSError as e:
        raise PyrunError(f"{FIELD}: exporting the BPF program: {strerror(e.errno)}") from None
    finally:
        os.close(fd)


class _Fileno:
    """What pyseccomp's export_bpf wants: something with fileno()."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd
