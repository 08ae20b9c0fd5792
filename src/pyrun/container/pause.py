"""`pause` and `resume`: freeze and thaw every process of the container.

runc's rules: only a running or created container can be paused (else
"container not running"), only a paused one resumed ("container not paused").
"""
from __future__ import annotations

from pyrun import errors
from pyrun.cgroups.manager import load
from pyrun.errors import PyrunError
from pyrun.state.status import CREATED, PAUSED, RUNNING, status_of
from pyrun.state.store import ContainerDir


def pause(root: str, container_id: str) -> None:
    with ContainerDir.open(root, container_id) as cdir:
        state = cdir.load()
        if status_of(cdir, state) not in (RUNNING, CREATED):
            raise PyrunError(errors.NOT_RUNNING)
        try:
            load(state).freeze()
        except OSError as e:
            raise PyrunError(e.strerror or str(e)) from None


def resume(root: str, container_id: str) -> None:
    with ContainerDir.open(root, container_id) as cdir:
        state = cdir.load()
        if status_of(cdir, state) != PAUSED:
            raise PyrunError(errors.NOT_PAUSED)
        try:
            load(state).thaw()
        except OSError as e:
            raise PyrunError(e.strerror or str(e)) from None
