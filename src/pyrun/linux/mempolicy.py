"""linux.memoryPolicy: the NUMA memory policy of the container's process, set
with set_mempolicy(2) in the init.  The policy is inherited across fork and
kept across execve, so it becomes the container process's own.

`check` refuses a bad mode, node list or flag in runc's words (its specconv
and config validation, at create); `validate` (for `create`) also checks that
the nodes can hold memory on this host; `apply` reports failures as OSError so
the init names its step.
"""
from __future__ import annotations

import ctypes
import errno
import os
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError

_libc = ctypes.CDLL(None, use_errno=True)
_SYS = {"x86_64": {"set_mempolicy": 238}, "aarch64": {"set_mempolicy": 237}}[os.uname().machine]

# include/uapi/linux/mempolicy.h
MODES = {
    "MPOL_DEFAULT": 0,
    "MPOL_PREFERRED": 1,
    "MPOL_BIND": 2,
    "MPOL_INTERLEAVE": 3,
    "MPOL_LOCAL": 4,
    "MPOL_PREFERRED_MANY": 5,
    "MPOL_WEIGHTED_INTERLEAVE": 6,
}
FLAGS = {
    "MPOL_F_STATIC_NODES": 1 << 15,
    "MPOL_F_RELATIVE_NODES": 1 << 14,
    "MPOL_F_NUMA_BALANCING": 1 << 13,
}
_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
_NEED_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY")
# The kernel refuses bits above MAX_NUMNODES (at most 1 << 10 with CONFIG_NODES_SHIFT=10).
_MAX_NODE = 1023
_NODE_DIR = "/sys/devices/system/node"


def _quote(text: str) -> str:
    """Go's %q for the printable text a config holds: runc quotes values so."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _node(text: str) -> int:
    """One node number, refused as runc's ToCPUSet (Go's strconv.ParseUint, 32 bits) refuses it."""
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"strconv.ParseUint: parsing {_quote(text)}: invalid syntax")
    value = int(text)
    if value >= 1 << 32:
        raise ValueError(f"strconv.ParseUint: parsing {_quote(text)}: value out of range")
    if value > _MAX_NODE:
        raise ValueError(f"values larger than {_MAX_NODE} are not supported")
    return value


def parse_nodes(text: str) -> set[int]:
    """A list string, "0-3,7" -> {0, 1, 2, 3, 7}, read as runc reads it: spaces
    around and empty elements allowed; ValueError with runc's reason."""
    nodes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        first = _node(lo)
        last = _node(hi) if sep else first
        if first > last:
            raise ValueError(f"invalid range: {part}")
        nodes.update(range(first, last + 1))
    if text and not nodes:
        raise ValueError(f"no members found in set {_quote(text)}")
    return nodes


def check(policy: Any) -> tuple[int, set[int]]:
    """(mode | flags, nodes), or a ConfigError naming the field in runc's words
    and order (specconv: mode, nodes, flags; then validate: the node count).

    load.py also runs this before wording a schema error, so that a policy the
    schema refuses is reported as runc reports it: the types it asks about
    may not have been checked yet."""
    field = "linux.memoryPolicy"
    if not isinstance(policy, dict):
        raise ConfigError(f"{field}: must be an object")
    mode = "" if policy.get("mode") is None else policy["mode"]     # absent or null: Go's ""
    if not isinstance(mode, str):
        raise ConfigError(f"{field}.mode: must be a string")
    if mode not in MODES:
        raise ConfigError(f"{field}.mode: invalid memory policy mode {_quote(mode)}")
    text = "" if policy.get("nodes") is None else policy["nodes"]
    if not isinstance(text, str):
        raise ConfigError(f"{field}.nodes: must be a string")
    try:
        nodes = parse_nodes(text)
    except ValueError as e:
        raise ConfigError(f"{field}.nodes: invalid memory policy nodes {_quote(text)}: {e}") from None
    names = policy.get("flags") or []
    if not isinstance(names, list):
        raise ConfigError(f"{field}.flags: must be an array")
    flags = 0
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ConfigError(f"{field}.flags[{i}]: must be a string")
        if name not in FLAGS:
            raise ConfigError(f"{field}.flags[{i}]: invalid memory policy flag {_quote(name)}")
        flags |= FLAGS[name]
    if mode in _NO_NODES and nodes:
        raise ConfigError(f"{field}.nodes: memory policy mode requires 0 nodes but got {len(nodes)}")
    if mode in _NEED_NODES and not nodes:
        raise ConfigError(f"{field}.nodes: memory policy mode requires at least one node but got 0")
    # What runc leaves to the kernel (set_mempolicy: invalid argument), said here and why.
    if flags & FLAGS["MPOL_F_STATIC_NODES"] and flags & FLAGS["MPOL_F_RELATIVE_NODES"]:
        raise ConfigError(f"{field}.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other")
    if flags & FLAGS["MPOL_F_NUMA_BALANCING"] and mode not in ("MPOL_BIND", "MPOL_PREFERRED_MANY"):
        raise ConfigError(f"{field}.flags: MPOL_F_NUMA_BALANCING works only with MPOL_BIND "
                          f"(or MPOL_PREFERRED_MANY on newer kernels), not {mode}")
    if mode in _NO_NODES and flags & (FLAGS["MPOL_F_STATIC_NODES"] | FLAGS["MPOL_F_RELATIVE_NODES"]):
        raise ConfigError(f"{field}.flags: {mode} takes no node flags")
    return MODES[mode] | flags, nodes


def _memory_nodes() -> set[int] | None:
    """Nodes that have memory on this host; None when the kernel does not say
    (no NUMA support: then the kernel's own answer has to do)."""
    for name in ("has_memory", "online"):
        try:
            with open(os.path.join(_NODE_DIR, name)) as f:
                text = f.read().strip()
        except OSError:
            continue
        try:
            return parse_nodes(text)
        except ValueError:
            return None
    return None


def validate(policy: dict[str, Any]) -> None:
    """Refuse a memory policy the kernel would refuse, naming the field.

    Without MPOL_F_RELATIVE_NODES (where node numbers are positions, not
    nodes) the kernel keeps only the nodes that exist and have memory, and
    refuses an empty result: say which nodes the host has instead."""
    _value, nodes = check(policy)
    if not nodes or "MPOL_F_RELATIVE_NODES" in (policy.get("flags") or []):
        return
    present = _memory_nodes()
    if present is not None and not nodes & present:
        have = ",".join(str(n) for n in sorted(present)) or "none"
        raise ConfigError(f"linux.memoryPolicy.nodes: no memory node {policy.get('nodes')!r} "
                          f"on this host (nodes with memory: {have})")


def apply(policy: dict[str, Any]) -> None:
    """set_mempolicy(2) for the calling process."""
    try:
        value, nodes = check(policy)
    except ConfigError as e:
        raise OSError(errno.EINVAL, str(e)) from None
    if nodes:
        maxnode = max(nodes) + 1
        words = (maxnode + 63) // 64
        mask = (ctypes.c_ulong * words)()
        for n in nodes:
            mask[n // 64] |= 1 << (n % 64)
        # The kernel reads maxnode - 1 bits (a long-standing off-by-one): pass one more.
        ret = _libc.syscall(_SYS["set_mempolicy"], value, mask, ctypes.c_ulong(maxnode + 1))
    else:
        ret = _libc.syscall(_SYS["set_mempolicy"], value, None, ctypes.c_ulong(0))
    if ret < 0:
        err = ctypes.get_errno()
        text = os.strerror(err)
        raise OSError(err, f"linux.memoryPolicy: set_mempolicy {policy.get('mode')} "
                           f"nodes {policy.get('nodes') or '(none)'!r}: {text[:1].lower()}{text[1:]}")
