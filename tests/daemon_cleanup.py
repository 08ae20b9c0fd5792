"""Teardown helpers shared by the real-daemon harnesses (dockerd, containerd,
podman): kill what a dead daemon left behind, by pid, touching nothing else."""
from __future__ import annotations

import os
import signal
import time
from typing import Callable


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
            pass
