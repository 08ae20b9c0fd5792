"""maskedPaths and readonlyPaths, applied after the switch to the new root."""
from __future__ import annotations

import errno
import os

from pyrun.linux import syscalls as s
from pyrun.rootfs.mounts import current_flags


def readonly(path: str) -> None:
    try:
        s.mount(path, path, None, s.MS_BIND | s.MS_REC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise
    s.mount(path, path, None, s.MS_BIND | s.MS_REMOUNT | s.MS_RDONLY | s.MS_REC | current_flags(path))


def mask(path: str) -> None:
    """A directory gets an empty read-only tmpfs; anything else /dev/null."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            s.mount("tmpfs", path, "tmpfs", s.MS_RDONLY)
        elif os.path.lexists(path):
            s.mount("/dev/null", path, None, s.MS_BIND)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
