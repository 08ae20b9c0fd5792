"""Device access rules: which device nodes the container may create and open.

A container with CAP_MKNOD could otherwise make a node for the host's disk.
runc's rule set: deny everything, the config's `linux.resources.devices` in
order, then the default devices (a `linux.devices` node gets no rule of its
own: `resources.devices` decides, as in runc).  One rule
list feeds both enforcers: cgroup v1 takes the rules as devices.allow /
devices.deny lines, a cgroup v2-only host gets them compiled into an eBPF
program (cgroups/ebpf.py) attached to the container's cgroup.
"""
from __future__ import annotations

import os
from pyrun.records import dataclass   # not typing.NamedTuple: typing and re cost every create ~4 ms

TYPE_CHECKING = False     # typing.Any only for annotations (lazy strings)
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class Rule:
    allow: bool
    kind: str              # "a" (every device), "c" or "b"
    major: int | None      # None: any
    minor: int | None
    access: str            # a subset of "rwm"

    def line(self) -> str:
        """The rule as cgroup v1's devices.allow/devices.deny take it."""
        if self.kind == "a":
            return "a"
        num = lambda v: "*" if v is None else str(v)  # noqa: E731
        return f"{self.kind} {num(self.major)}:{num(self.minor)} {self.access}"


# (type, major, minor, access) that every container gets, as runc.
DEFAULT_RULES: list[tuple[str, int | None, int | None, str]] = [
    ("c", None, None, "m"), ("b", None, None, "m"),          # mknod of anything; opening is what is guarded
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),   # null zero full
    ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"),   # random urandom tty
    ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, None, "rwm"),  # console ptmx pts/*
]


def _num(value: Any) -> int | None:
    return None if value is None or value < 0 else int(value)


def device_rules(spec: dict[str, Any]) -> list[Rule]:
    """Every rule, in the order runc applies them (the last match wins)."""
    linux = spec.get("linux") or {}
    out = [Rule(False, "a", None, None, "rwm")]
    for rule in (linux.get("resources") or {}).get("devices") or []:
        # As runc: letters other than r, w and m ("rwa" in runc's own tests) are
        # ignored, and a rule left with none of them changes nothing.
        access = "".join(c for c in "rwm" if c in (rule.get("access") or "rwm"))
        if access:
            out.append(Rule(bool(rule.get("allow")), rule.get("type") or "a", _num(rule.get("major")),
                            _num(rule.get("minor")), access))
    # linux.devices nodes get no rule of their own: resources.devices decides, in order
    # (config-linux.md), as runc does; callers (Docker --device) add their allow rules.
    out += [Rule(True, *r) for r in DEFAULT_RULES]
    return out


def rules_for(spec: dict[str, Any]) -> list[tuple[bool, str]]:
    """(allow, v1 rule line) in the order they must be written."""
    return [(r.allow, r.line()) for r in device_rules(spec)]


def apply_v1(cgroup_dir: str, spec: dict[str, Any]) -> None:
    for allow, line in rules_for(spec):
        name = "devices.allow" if allow else "devices.deny"
        try:
            with open(os.path.join(cgroup_dir, name), "w") as f:
                f.write(line)
        except OSError as e:
            raise OSError(e.errno, f"failed to write {line!r} to {name}: {e.strerror}",
                          cgroup_dir) from None


def apply_v2(cgroup_dir: str, spec: dict[str, Any]) -> None:
    """cgroup v2 has no devices files: attach the rules as an eBPF program."""
    from pyrun.cgroups.ebpf import attach_filter
    attach_filter(cgroup_dir, device_rules(spec))
