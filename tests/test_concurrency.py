"""Concurrency: 50 lifecycles at once on distinct IDs, and commands racing on
one ID (two starts, two creates, delete against kill, state against
delete).  Exactly one winner where there can be one; clean one-line errors
for the losers; never a traceback, never a torn state.json, nothing left."""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import COUNTS, PYRUN

PARALLEL = 50
RACES = 6


def _popen(pyrun, *args: str) -> subprocess.Popen:
    """Output to files, not pipes: a created container holds its stdio open."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), *args],
                            stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True)
    proc.files = (out, err)   # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    proc.wait(timeout=60)
    outs = []
    for f in proc.files:      # type: ignore[attr-defined]
        f.seek(0)
        outs.append(f.read())
        f.close()
    out, err = outs
    assert "Traceback" not in out + err, err
    if proc.returncode != 0:
        assert len(err.strip().splitlines()) == 1, err      # one clear line
    return proc.returncode, out, err


def _msg(err: str) -> str:
    """The msg of pyrun's one logfmt error line ("" for none)."""
    found = re.findall(r'level=error msg="((?:[^"\\]|\\.)*)"', err)
    return found[0] if found else err.strip()


def _state_files_are_whole(root: Path) -> int:
    """Parse every state.json there is right now: a torn one fails here."""
    seen = 0
    for path in root.glob("*/state.json"):
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue           # deleted under us: fine
        json.loads(text)
        seen += 1
    return seen


def _lifecycle(pyrun, bundle_path: str) -> str:
    cid = pyrun.new_id()
    pyrun("create", "-b", bundle_path, cid)
    assert pyrun.state(cid)["status"] == "created"
    pyrun("start", cid)
    assert pyrun.state(cid)["status"] == "running"
    pyrun("exec", cid, "true")
    pyrun("kill", cid, "KILL")
    assert pyrun.wait_status(cid, "stopped", timeout=30)["status"] == "stopped"
    pyrun("delete", cid)
    assert pyrun("state", cid, check=False).returncode != 0
    return cid


def test_fifty_lifecycles_in_parallel(pyrun, bundle):
    bundle.set_args("sleep", "1000")
    checks = 0
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = [pool.submit(_lifecycle, pyrun, str(bundle.path)) for _ in range(PARALLEL)]
        while not all(f.done() for f in futures):
            checks += _state_files_are_whole(pyrun.root)
            listed = pyrun("list", "--format", "json").stdout
            json.loads(listed)           # `list` never chokes on a container half made or half gone
            time.sleep(0.01)
        ids = [f.result() for f in futures]
    assert len(set(ids)) == PARALLEL
    assert checks > 0          # the checker did see containers mid-flight
    COUNTS["lifecycles run concurrently"] += PARALLEL


@pytest.mark.parametrize("round_", range(RACES))
def test_two_starts_one_wins(pyrun, bundle, round_):
    bundle.set_args("sleep", "1000")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    procs = [_popen(pyrun, "start", cid) for _ in range(2)]
    results = [_finish(p) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes[0] == 0 and codes[1] != 0, results
    loser = next(r for r in results if r[0] != 0)
    assert "cannot start an already running container" in loser[2], loser
    assert pyrun.state(cid)["status"] == "running"
    pyrun("delete", "--force", cid)


@pytest.mark.parametrize("round_", range(RACES))
def test_two_creates_of_one_id_one_wins(pyrun, bundle, round_):
    bundle.set_args("sleep", "1000")
    cid = pyrun.new_id()
    procs = [_popen(pyrun, "create", "-b", str(bundle.path), cid) for _ in range(2)]
    results = [_finish(p) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes[0] == 0 and codes[1] != 0, results
    loser = next(r for r in results if r[0] != 0)
    assert _msg(loser[2]) == "pyrun create failed: container with given ID already exists", loser   # runc: "runc create failed: " the same
    st = pyrun.state(cid)
    assert st["status"] == "created"
    raw = json.loads((pyrun.root / cid / "state.json").read_text())
    assert raw["init_process_pid"] == st["pid"]
    pyrun("delete", "--force", cid)


@pytest.mark.parametrize("round_", range(RACES))
def test_delete_races_kill(pyrun, bundle, round_):
    bundle.set_args("sleep", "1000")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    first, second = (("kill", cid, "KILL"), ("delete", "--force", cid))[:: 1 if round_ % 2 else -1]
    procs = [_popen(pyrun, *first), _popen(pyrun, *second)]
    results = dict(zip(("first", "second"), (_finish(p) for p in procs)))
    delete_rc = results["second" if first[0] == "kill" else "first"][0]
    assert delete_rc == 0, results            # delete --force always wins in the end
    kill_rc, _, kill_err = results["first" if first[0] == "kill" else "second"]
    # a race has three honest outcomes: kill first, delete first, or kill
    # between delete's SIGKILL and its removal of the state
    assert (kill_rc, _msg(kill_err)) in {(0, ""), (1, "container does not exist"),
                                         (1, "container not running")}, kill_err
    assert pyrun("state", cid, check=False).returncode != 0


def test_state_and_list_race_delete(pyrun, bundle):
    """Readers take no lock: they must see a container, or none, never a
    half-removed one as a traceback."""
    bundle.set_args("sleep", "1000")
    ids = []
    for _ in range(10):
        cid = pyrun.new_id()
        pyrun("run", "-d", "-b", str(bundle.path), cid)
        ids.append(cid)
    deleters = [_popen(pyrun, "delete", "--force", cid) for cid in ids]
    readers = [_popen(pyrun, "state", cid) for cid in ids] + [_popen(pyrun, "list") for _ in range(5)]
    for proc in deleters:
        assert _finish(proc)[0] == 0
    for proc in readers[:len(ids)]:                      # state: the container, or none
        rc, _out, err = _finish(proc)
        assert (rc, _msg(err)) in {(0, ""), (1, "container does not exist")}, err
    for proc in readers[len(ids):]:                      # list: never fails
        assert _finish(proc)[::2] == (0, "")
    assert not [p for p in os.listdir(pyrun.root) if p in ids]
