"""Compiled seccomp filters, kept in the state root and keyed by content.

Docker, containerd and podman give every container the same profile; compiling
it means importing pyseccomp (cffi and libseccomp: ~20 ms) and building a few
hundred rules, for the same BPF each time.  A filter is reused only for the
byte-identical `linux.seccomp` section, on the same kernel release, pyrun
version and pyseccomp installation; a config error is never cached, so it is
reported as before.  A cache that cannot be read or written only costs time.
"""
from __future__ import annotations

import json
import os

from pyrun.seccomp import CompiledFilter, compile_filter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_DIR = "@seccomp-filters"       # beside the containers, under a name no ID can take
_LIMIT = 64                     # entries kept; the oldest go first
# What compile_filter makes; older entries are not reused.  2: with the -ENOSYS
# stub; 3: flags as runc 1.3+ (SPEC_ALLOW when `flags` is absent, TSYNC as 0),
# since the stored flags were computed from the same config by another rule.
_FORMAT = 3


def compiled(cfg: dict[str, Any], root: str) -> CompiledFilter:
    """compile_filter(cfg), through the cache in `root`."""
    directory = os.path.join(root, _DIR)
    path = os.path.join(directory, _key(cfg) + ".bpf")
    try:
        with open(path, "rb") as f:
            blob = f.read()
        flags = int.from_bytes(blob[:8], "little")
        bpf = blob[8:]
        if bpf and len(bpf) % 8 == 0:
            path_ = cfg.get("listenerPath") or None
            return CompiledFilter(bpf, flags, path_, cfg.get("listenerMetadata") if path_ else None)
    except (OSError, ValueError):
        pass
    filt = compile_filter(cfg)
    _store(directory, path, filt.flags.to_bytes(8, "little") + filt.bpf)
    return filt


def _key(cfg: dict[str, Any]) -> str:
    try:
        from _sha256 import sha256     # CPython's own: hashlib would load OpenSSL
    except ImportError:
        from hashlib import sha256
    from pyrun import __version__
    h = sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode())
    h.update(f"|{__version__}|{_FORMAT}|{os.uname().release}|{_pyseccomp_stamp()}".encode())
    return h.hexdigest()


def _pyseccomp_stamp() -> str:
    """The installed binding (without importing it): reinstalling it changes the key."""
    import sys
    for entry in sys.path:
        try:
            st = os.stat(os.path.join(entry or ".", "pyseccomp.py"))
        except OSError:
            continue
        return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
    return "-"


def _store(directory: str, path: str, blob: bytes) -> None:
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        entries = sorted(os.scandir(directory), key=lambda e: e.stat().st_mtime_ns)
        for old in entries[:max(0, len(entries) + 1 - _LIMIT)]:
            os.unlink(old.path)
        tmp = f"{path}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, blob)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        pass
