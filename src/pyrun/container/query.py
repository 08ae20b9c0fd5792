"""`state` and `list`: read-only views; no lock, state.json is replaced atomically."""
from __future__ import annotations

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import PyrunError
from pyrun.state.status import oci_state, status_of
from pyrun.state.store import ContainerDir, list_ids


def state(root: str, container_id: str) -> dict[str, Any]:
    with ContainerDir.open(root, container_id, lock=False) as cdir:
        raw = cdir.load()
        return oci_state(cdir, raw, status_of(cdir, raw))


def list_states(root: str, missing_ok: bool = True) -> list[dict[str, Any]]:
    out = []
    for container_id in list_ids(root, missing_ok):
        try:
            out.append(state(root, container_id))
        except (PyrunError, OSError, ValueError):
            continue     # being created or deleted right now
    return out
