"""Capabilities the config asks for that cannot be had: dropped with a warning.

config.md: a capability the runtime cannot grant MUST be logged as a warning
and the runtime SHOULD NOT fail; runc warns and runs. Decided here, in the
command (the init cannot print), for `create` and for every `exec` alike: an
exec'd process of a container that lost CAP_SYS_RESOURCE at create must lose
it too, or its capset fails.
"""
from __future__ import annotations

from pyrun.linux.capabilities import CAPABILITIES

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def drop_ungrantable(process: dict) -> list[str]:
    """Edit process.capabilities in place: no set keeps a capability outside
    our own bounding set (e.g. CAP_SYS_RESOURCE in a sandbox without it), and
    ambient keeps only what is also permitted and inheritable (the kernel
    refuses to raise anything else: runc 1.1's own `runc spec` with an ambient
    list and no inheritable one). Returns the warnings, for the caller to log
    (create, exec) or show (explain)."""
    warnings: list[str] = []
    caps = process.get("capabilities")
    if not caps:
        return warnings
    named = {n for kind in SETS for n in caps.get(kind) or [] if n in CAPABILITIES}
    missing = sorted(n for n in named if not _in_our_bounding_set(CAPABILITIES[n]))
    if missing:
        warnings.append(f"ignoring capabilities this process cannot grant: {', '.join(missing)}")
        for kind in SETS:
            if kind in caps:
                caps[kind] = [n for n in caps[kind] or [] if n not in missing]
    ambient = caps.get("ambient") or []
    raisable = set(caps.get("permitted") or []) & set(caps.get("inheritable") or [])
    lost = [n for n in ambient if n not in raisable]
    if lost:
        for name in lost:
            warnings.append(f"can't raise ambient capability {name}: operation not permitted")   # runc's words
        caps["ambient"] = [n for n in ambient if n in raisable]
    return warnings


def _in_our_bounding_set(cap: int) -> bool:
    """PR_CAPBSET_READ: a syscall per name, cheaper than parsing /proc/self/status."""
    from pyrun.linux import syscalls as s
    try:
        return bool(s.prctl(s.PR_CAPBSET_READ, cap))
    except OSError:      # EINVAL: a capability this kernel does not know (the init refuses it)
        return True
