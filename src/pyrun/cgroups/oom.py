"""OOM notifications for `events`: a pollable fd per container cgroup.

On v1 an eventfd registered on memory.oom_control through
cgroup.event_control; on v2 memory.events, whose changes kernfs reports as
POLLPRI (the count of oom_kill lines tells a kill from other changes).
"""
from __future__ import annotations

import os
import select
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


class Watch:
    """The container's OOM notification source, as a pollable fd: `events`
    to poll for, `check()` once it fires (True: an OOM kill happened)."""

    def __init__(self, kind: str | None = None, cgroup: str = "") -> None:
        self.fd = -1
        self.events = 0
        self.check: Callable[[], bool] = lambda: False
        try:
            if kind == "v1":
                self._setup_v1(cgroup)
            elif kind == "v2":
                self._setup_v2(cgroup)
        except OSError:
            self.close()        # no OOM source (no memory controller here): stats only

    def _setup_v1(self, cgroup: str) -> None:
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        self.fd = efd
        ofd = os.open(os.path.join(cgroup, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(os.path.join(cgroup, "cgroup.event_control"), "w") as f:
                f.write(f"{efd} {ofd}")
        finally:
            os.close(ofd)
        self.events = select.POLLIN

        def fired() -> bool:
            os.eventfd_read(efd)
            # the eventfd also fires when the cgroup goes away: that is no OOM
            return os.path.exists(os.path.join(cgroup, "cgroup.event_control"))
        self.check = fired

    def _setup_v2(self, cgroup: str) -> None:
        self.fd = os.open(os.path.join(cgroup, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
        self.events = select.POLLPRI | select.POLLERR
        seen = [self._oom_kills()]

        def fired() -> bool:
            count = self._oom_kills()
            grew, seen[0] = count > seen[0], count
            return grew
        self.check = fired

    def _oom_kills(self) -> int:
        text = os.pread(self.fd, 4096, 0).decode()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
