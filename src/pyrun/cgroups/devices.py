"""Device access rules: which device nodes the container may create and open.

A container with CAP_MKNOD could otherwise make a node for the host's disk.
runc's rule set: deny everything, the config's `linux.resources.devices` in
order, then the default devices.  cgroup v1
takes them as devices.allow/devices.deny lines; on a cgroup v2-only host
they need an eBPF program (not done yet: the v2 path returns without rules).
"""
from __future__ import annotations

import os
from typing import Any

# (type, major, minor, access) that every container gets, as runc.
DEFAULT_RULES: list[tuple[str, int | None, int | None, str]] = [
    ("c", None, None, "m"), ("b", None, None, "m"),          # mknod of anything; opening is what is guarded
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),   # null zero full
    ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"),   # random urandom tty
    ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, None, "rwm"),  # console ptmx pts/*
]


def _line(kind: str, major: int | None, minor: int | None, access: str) -> str:
    if kind == "a":
        return "a"
    num = lambda v: "*" if v is None or v < 0 else str(v)  # noqa: E731
    return f"{kind} {num(major)}:{num(minor)} {access or 'rwm'}"


def rules_for(spec: dict[str, Any]) -> list[tuple[bool, str]]:
    """(allow, v1 rule line) in the order they must be written."""
    linux = spec.get("linux") or {}
    out: list[tuple[bool, str]] = [(False, "a")]
    for rule in (linux.get("resources") or {}).get("devices") or []:
        out.append((bool(rule.get("allow")), _line(rule.get("type") or "a", rule.get("major"),
                                                   rule.get("minor"), rule.get("access") or "rwm")))
    # linux.devices nodes get no rule of their own: resources.devices decides, in order
    # (config-linux.md), as runc does; callers (Docker --device) add their allow rules.
    out += [(True, _line(*r)) for r in DEFAULT_RULES]
    return out


def apply_v1(cgroup_dir: str, spec: dict[str, Any]) -> None:
    for allow, line in rules_for(spec):
        name = "devices.allow" if allow else "devices.deny"
        try:
            with open(os.path.join(cgroup_dir, name), "w") as f:
                f.write(line)
        except OSError as e:
            raise OSError(e.errno, f"failed to write {line!r} to {name}: {e.strerror}",
                          cgroup_dir) from None
