"""pyrun SIGKILLed at every named point of create, start, exec and delete
(PYRUN_FAULT, src/pyrun/faults.py).  After each: `state` tells the truth
(or says the container does not exist), and `delete --force` leaves no
mount, cgroup, process, state directory or fifo behind (the `pyrun`
fixture's leak check, plus an explicit one right after the delete)."""
from __future__ import annotations

import contextlib
import json
import os
import signal

import pytest

from conftest import COUNTS, Pyrun, Snapshot, runs_our_interpreter, wait_for_no_leaks
from pyrun.faults import POINTS
from pyrun.process.init import EXEC_STEPS, STEPS
from waiting import eventually


def _until_ready(steps: list) -> list[str]:
    """Steps at which the command that forked the init is still there to die."""
    names = [name for name, _ in steps]
    return names[:names.index("report ready") + 1]


CREATE_POINTS = list(POINTS["create"][:2]) + _until_ready(STEPS) + [POINTS["create"][2]]
EXEC_POINTS = _until_ready(EXEC_STEPS) + list(POINTS["exec"])


def _killed(pyrun: Pyrun, point: str, *args: str) -> None:
    res = pyrun(*args, check=False, env={**os.environ, "PYRUN_FAULT": point})
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == -signal.SIGKILL, f"{point}: pyrun was not killed there: {res}"
    COUNTS["faults injected"] += 1


def _truthful_state(pyrun: Pyrun, cid: str) -> str:
    """`state` either says the container does not exist, or gives a status
    the kernel agrees with: a live pid for created/running, none for stopped."""
    res = pyrun("state", cid, check=False)
    assert "Traceback" not in res.stderr, res.stderr
    if res.returncode != 0:
        assert "does not exist" in res.stderr, res.stderr
        return "absent"
    st = json.loads(res.stdout)
    assert st["status"] in ("created", "running", "stopped"), st
    raw = json.loads((pyrun.root / cid / "state.json").read_text())
    pid = raw["init_process_pid"]
    alive = os.path.exists(f"/proc/{pid}") and _proc_state(pid) not in ("Z", "X", None)
    if st["status"] == "stopped":
        assert st["pid"] == 0
    else:
        assert st["pid"] == pid and alive, (st, _proc_state(pid))
        ours = runs_our_interpreter(pid)
        if st["status"] == "created":     # still our interpreter, waiting for start
            assert ours, os.readlink(f"/proc/{pid}/exe")
        else:
            assert not ours, os.readlink(f"/proc/{pid}/exe")
    return st["status"]


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def _settled_state(pyrun: Pyrun, cid: str, timeout: float = 5.0) -> str:
    """A half-created init notices its parent died and exits: let it."""
    seen = [""]

    def settled() -> bool:
        seen[0] = _truthful_state(pyrun, cid)
        return seen[0] in ("absent", "stopped")
    with contextlib.suppress(AssertionError):      # the caller asserts on what was seen last
        eventually(settled, timeout, f"{cid} absent or stopped", interval=0.05)
    return seen[0]


def _force_delete_leaves_nothing(pyrun: Pyrun, cid: str, before: Snapshot) -> None:
    res = pyrun("delete", "--force", cid, check=False)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res
    assert not (pyrun.root / cid).exists()
    leaks = wait_for_no_leaks(pyrun.root, before)
    assert not leaks, f"left behind: {leaks}"
    gone = pyrun("state", cid, check=False)
    assert gone.returncode != 0 and "does not exist" in gone.stderr


def _rich(bundle) -> None:
    """Every step has something to do: hooks, rlimits, sysctl, masked paths."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/true"}]}
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "0"}
    bundle.write()


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_create_killed(pyrun, bundle, point):
    _rich(bundle)
    before = Snapshot.take(pyrun.root)
    cid = pyrun.new_id()
    _killed(pyrun, point, "create", "-b", str(bundle.path), cid)
    status = _settled_state(pyrun, cid)
    # Killed before it recorded anything: no container; after: a dead one.
    assert status in ("absent", "stopped"), status
    _force_delete_leaves_nothing(pyrun, cid, before)


@pytest.mark.parametrize("point", POINTS["start"])
def test_start_killed(pyrun, bundle, point):
    _rich(bundle)
    before = Snapshot.take(pyrun.root)
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    _killed(pyrun, point, "start", cid)
    status = _truthful_state(pyrun, cid)
    assert status in ("created", "running", "stopped"), status
    if status == "created":       # nobody released it: a second start still can
        pyrun("start", cid)
        assert _truthful_state(pyrun, cid) == "running"
    _force_delete_leaves_nothing(pyrun, cid, before)


@pytest.mark.parametrize("point", POINTS["delete"])
@pytest.mark.parametrize("started", [False, True], ids=["created", "running"])
def test_delete_killed(pyrun, bundle, point, started):
    _rich(bundle)
    before = Snapshot.take(pyrun.root)
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    if started:
        pyrun("start", cid)
    _killed(pyrun, point, "delete", "--force", cid)
    assert _settled_state(pyrun, cid) == "stopped"
    _force_delete_leaves_nothing(pyrun, cid, before)


@pytest.mark.parametrize("point", EXEC_POINTS)
def test_exec_killed(pyrun, bundle, point):
    _rich(bundle)
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}]
    bundle.write()
    before = Snapshot.take(pyrun.root)
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    _killed(pyrun, point, "exec", cid, "sleep", "30")
    # The container itself is untouched by a dying exec.
    assert _truthful_state(pyrun, cid) == "running"
    _force_delete_leaves_nothing(pyrun, cid, before)
