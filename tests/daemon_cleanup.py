"""Teardown helpers shared by the real-daemon harnesses (dockerd, containerd,
podman): kill what a dead daemon left behind, by pid, touching nothing else."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

_MNT_DETACH = 2


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_by_cmdline(marker: bytes, rounds: int = 50) -> None:
    """Every process (but us) whose command line contains `marker`."""
    for _ in range(rounds):
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        if marker in f.read():
                            pids.add(int(entry))
                except OSError:
                    pass
        if not pids:
            return
        _kill_all(pids)
        time.sleep(0.1)


def empty_and_remove_cgroups(dirs: Callable[[], list[str]], rounds: int = 50) -> None:
    """Kill the processes left in `dirs()` (our own cgroups only), then rmdir them."""
    for _ in range(rounds):
        pids: set[int] = set()
        for d in dirs():
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids.update(int(p) for p in f.read().split())
            except (OSError, ValueError):
                pass
        if not pids:
            break
        _kill_all(pids)
        time.sleep(0.1)
    for d in dirs():
        try:
            os.rmdir(d)
        except OSError:
            _remove_if_not_cgroupfs(d)


def _remove_if_not_cgroupfs(d: str) -> None:
    """On a v1 host without some hierarchy (hugetlb, net_cls...), /sys/fs/cgroup
    still has a plain tmpfs directory of that name, and conmon makes its
    `conmon/tasks` there as in a cgroup. A real cgroup directory always has
    cgroup.procs; what lacks it is ordinary files, removed as such."""
    if not os.path.exists(os.path.join(d, "cgroup.procs")):
        shutil.rmtree(d, ignore_errors=True)


def cgroup_dirs_named(name: str) -> list[str]:
    """Every cgroup directory at or below one called `name`, deepest first."""
    found: list[str] = []
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        return found
    for top in root.iterdir():
        for dirpath, dirnames, _files in os.walk(top):
            if os.path.basename(dirpath) == name:
                dirnames[:] = []
                found += [sub for sub, _d, _f in os.walk(dirpath)]
    return sorted(found, key=len, reverse=True)


def cgroups_below(name: str) -> list[str]:
    """The cgroup directories below (not at) one called `name`: what a daemon's
    containers left under its cgroup parent, deepest first."""
    return [d for d in cgroup_dirs_named(name) if os.path.basename(d) != name]


def mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f]


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def unmount_below(prefix: str, rounds: int = 5) -> None:
    """Lazily unmount everything at or below `prefix`, deepest first."""
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(rounds):
        points = [m for m in mountpoints() if m == prefix or m.startswith(prefix + "/")]
        if not points:
            return
        for m in sorted(points, key=len, reverse=True):
            libc.umount2(m.encode(), _MNT_DETACH)
