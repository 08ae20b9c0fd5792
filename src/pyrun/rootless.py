"""Whether pyrun runs rootless, and where its state lives then.

runc's rules: the caller is "rootless" for cgroups when --rootless says so,
or (auto) when its euid is not 0, or when it is root inside a user
namespace.  $XDG_RUNTIME_DIR is honoured for the state root by the same
test, except that a real root (initial user namespace) keeps /run/pyrun and
a root in a user namespace whose $USER is "root" does too.
"""
from __future__ import annotations

import os

from pyrun.errors import UsageError

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def running_in_userns() -> bool:
    """Anything but the initial user namespace's identity map."""
    try:
        with open("/proc/self/uid_map") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields != ["0", "0", "4294967295"]


def parse_flag(value: str) -> bool | None:
    """--rootless: None means auto (Go's strconv.ParseBool words otherwise)."""
    if value in ("", "auto"):
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f'invalid value "{value}" for flag --rootless: parse error')


def rootless_cgroups(flag: str) -> bool:
    """Treat cgroup failures as "no cgroup" rather than as errors."""
    chosen = parse_flag(flag)
    if chosen is not None:
        return chosen
    return os.geteuid() != 0 or running_in_userns()


def honour_xdg_runtime_dir() -> bool:
    if not os.environ.get("XDG_RUNTIME_DIR"):
        return False
    if os.geteuid() != 0:
        return True
    if not running_in_userns():
        return False   # real root keeps /run/pyrun even with XDG_RUNTIME_DIR=/run/user/0
    return os.environ.get("USER", "") != "root"
