"""The systemd cgroup driver (--systemd-cgroup): not implemented yet, so the
flag is refused with runc's words rather than silently ignored."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun.cgroups.base import Cgroup
from pyrun.errors import PyrunError

UNAVAILABLE = "systemd cgroup flag passed, but systemd support for managing cgroups is not available"


def new(spec: dict[str, Any], container_id: str, rootless_flag: str = "false") -> Cgroup:
    raise PyrunError(UNAVAILABLE)


def load(state: dict[str, Any]) -> Cgroup:
    raise PyrunError(UNAVAILABLE)
