"""linux.personality: the execution domain of the container's process.

personality(2) is kept across execve, so setting it in the init makes it the
process's own; `LINUX32` makes `uname -m` say i686 (or armv8l) on a 64-bit
host.  The init sets it before loading seccomp, as runc does: a profile that
denies personality(2) denies it to the container, not to its set-up.

The runtime-spec defines no flag names ("currently no flag values are
supported"), so any flag is refused: a caller asking for, say,
ADDR_NO_RANDOMIZE must not believe it got it.  (runc warns and ignores them.)
"""
from __future__ import annotations

import ctypes
import errno
import os
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError

# include/uapi/linux/personality.h
DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
FLAGS: dict[str, int] = {}      # none defined by the runtime-spec (1.3)


def _value(persona: dict[str, Any]) -> int:
    field = "linux.personality"
    if not isinstance(persona, dict):
        raise ConfigError(f"{field}: must be an object")
    domain = persona.get("domain")
    if domain not in DOMAINS:
        raise ConfigError(f"{field}.domain: unknown execution domain {domain!r} (LINUX or LINUX32)")
    value = DOMAINS[domain]
    for i, name in enumerate(persona.get("flags") or []):
        if name not in FLAGS:
            raise ConfigError(f"{field}.flags[{i}]: unsupported personality flag {name!r} "
                              "(the runtime-spec defines none)")
        value |= FLAGS[name]
    return value


def validate(persona: dict[str, Any]) -> None:
    """Refuse an unknown domain or any flag, naming the field."""
    _value(persona)


def apply(persona: dict[str, Any]) -> None:
    """personality(2) on the calling process."""
    try:
        value = _value(persona)
    except ConfigError as e:
        raise OSError(errno.EINVAL, str(e)) from None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.personality.restype = ctypes.c_int
    if libc.personality(ctypes.c_ulong(value)) < 0:
        err = ctypes.get_errno()
        text = os.strerror(err)
        raise OSError(err, f"linux.personality: personality {persona.get('domain')}: "
                           f"{text[:1].lower()}{text[1:]}")
