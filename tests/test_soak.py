"""Soak: a thousand sequential lifecycles, then the leak check, and nothing
that grows with the number of containers run.

pyrun is a CLI: every command is a fresh process, so "RSS growth" of pyrun
itself can only come from state it reads back, which grows.  What is
measured, first hundred lifecycles against last hundred:
- each pyrun command's peak RSS (wait4's ru_maxrss) and wall time;
- the state root's entries and bytes (caches must stay bounded);
- the test process's fds (the leak check compares them exactly);
- host-wide: allocated file handles (/proc/sys/fs/file-nr), Slab, and dying
  cgroups (cgroup.stat) are recorded but not asserted: other test runs on
  the same host move them.
PYRUN_SOAK_LIFECYCLES changes the count (default 1000).
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from conftest import COUNTS, NOTES, PYRUN, Snapshot, wait_for_no_leaks

LIFECYCLES = int(os.environ.get("PYRUN_SOAK_LIFECYCLES", "1000"))
FULL_EVERY = 10     # every tenth lifecycle is create/start/state/kill/delete, the rest `run`
WINDOW = 100


# pyrun is started from this small helper, not from pytest: the kernel folds
# the pre-exec memory of a (v)forked child into ru_maxrss, and pytest's is
# larger than pyrun's.  The helper's own is ~10 MiB, below pyrun's.
SPAWNER = r"""
import json, os, sys, time
null = os.open("/dev/null", os.O_RDWR)
for line in sys.stdin:
    argv = json.loads(line)
    start = time.monotonic()
    pid = os.posix_spawn(argv[0], argv, dict(os.environ),
                         file_actions=[(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)])
    _, status, usage = os.wait4(pid, 0)
    print(json.dumps([os.waitstatus_to_exitcode(status), time.monotonic() - start, usage.ru_maxrss]), flush=True)
"""


class Spawner:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def __call__(self, argv: list[str]) -> tuple[int, float, int]:
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        code, seconds, rss = json.loads(self.proc.stdout.readline())
        return code, seconds, rss

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.wait()


SPAWN: Spawner | None = None


def _timed(pyrun, *args: str) -> tuple[int, float, int]:
    """(exit code, seconds, peak RSS in KiB) of one pyrun command."""
    assert SPAWN is not None
    return SPAWN([str(PYRUN), "--root", str(pyrun.root), *args])


def _root_usage(root: Path) -> tuple[int, int]:
    entries = size = 0
    for dirpath, dirs, files in os.walk(root):
        entries += len(dirs) + len(files)
        size += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
    return entries, size


def _host() -> dict[str, int]:
    out = {"file handles": int(Path("/proc/sys/fs/file-nr").read_text().split()[0])}
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            out["slab kB"] = int(line.split()[1])
    for top in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        stat = Path(top, "cgroup.stat")
        if stat.exists():
            fields = dict(line.split() for line in stat.read_text().splitlines())
            out["dying cgroups"] = int(fields.get("nr_dying_descendants", 0))
            break
    return out


def _lifecycle(pyrun, bundles: tuple[str, str], i: int) -> list[tuple[int, float, int]]:
    cid = pyrun.new_id()
    pyrun.created.pop()          # nothing to clean up unless it fails: keep the list short
    if i % FULL_EVERY:
        runs = [_timed(pyrun, "run", "-b", bundles[0], cid)]
    else:
        runs = [_timed(pyrun, "create", "-b", bundles[1], cid), _timed(pyrun, "start", cid),
                _timed(pyrun, "state", cid), _timed(pyrun, "kill", cid, "KILL")]
        with contextlib.suppress(AssertionError):      # delete's exit code below says if it did not
            pyrun.wait_status(cid, "stopped", timeout=10)
        runs.append(_timed(pyrun, "delete", cid))
    if any(code != 0 for code, _, _ in runs):
        pyrun.created.append(cid)
        raise AssertionError(f"lifecycle {i} ({cid}) failed: {runs}")
    return runs


def test_thousand_lifecycles(pyrun, bundle):
    global SPAWN
    SPAWN = Spawner()
    try:
        _soak(pyrun, bundle)
    finally:
        SPAWN.close()
        SPAWN = None


def _soak(pyrun, bundle) -> None:
    bundle.set_args("sh", "-c", "sleep 1000")
    sleeper = bundle.path.parent / "sleeper"
    sleeper.mkdir()
    config = json.loads((bundle.path / "config.json").read_text())
    config["root"]["path"] = str(bundle.rootfs)
    (sleeper / "config.json").write_text(json.dumps(config))
    bundle.set_args("sh", "-c", "exit 0")
    b = (str(bundle.path), str(sleeper))
    for i in range(3):     # warm the validated-config cache (both configs) and the page cache
        _lifecycle(pyrun, b, i)
    before = Snapshot.take(pyrun.root)
    root_before, host_before = _root_usage(pyrun.root), _host()
    started = time.monotonic()
    per_lifecycle: list[tuple[float, int]] = []
    for i in range(LIFECYCLES):
        runs = _lifecycle(pyrun, b, i)
        per_lifecycle.append((sum(r[1] for r in runs), max(r[2] for r in runs if r[2])))
        COUNTS["soak lifecycles"] += 1
    elapsed = time.monotonic() - started
    leaks = wait_for_no_leaks(pyrun.root, before)
    root_after, host_after = _root_usage(pyrun.root), _host()

    window = min(WINDOW, max(1, LIFECYCLES // 3))
    first, last = per_lifecycle[:window], per_lifecycle[-window:]
    rss_first = statistics.median(r for _, r in first)
    rss_last = statistics.median(r for _, r in last)
    t_first = statistics.median(t for t, _ in first)
    t_last = statistics.median(t for t, _ in last)
    NOTES.append(
        f"soak: {LIFECYCLES} lifecycles in {elapsed:.0f} s ({elapsed / LIFECYCLES * 1000:.0f} ms each); "
        f"pyrun peak RSS median {rss_first} -> {rss_last} KiB; lifecycle median {t_first * 1000:.0f} -> "
        f"{t_last * 1000:.0f} ms; state root {root_before} -> {root_after} (entries, bytes); "
        f"host {host_before} -> {host_after}")
    assert not leaks, f"left behind: {leaks}"
    assert root_after == root_before, (root_before, root_after)     # nothing accumulates in the state root
    assert rss_last <= rss_first * 1.05 + 1024, (rss_first, rss_last)
