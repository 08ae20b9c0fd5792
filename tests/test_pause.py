"""pause/resume: every process of the container stops and starts again.

On cgroup v1 (and hybrid) the freezer controller holds frozen tasks in the
kernel's refrigerator, shown as "D (disk sleep)" in /proc; the v2 freezer
parks them in an interruptible sleep ("S") and reports `frozen 1` in
cgroup.events.  Either way a CPU loop's utime stops moving."""
from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from conftest import ID_PREFIX, status_fields
from waiting import eventually
from pyrun.cgroups.manager import load
from pyrun.cgroups.layout import detect

pytestmark = pytest.mark.cgroup

LOOP = "i=0; while :; do i=$((i+1)); done"


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])         # utime + stime


def _state_letter(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return status_fields(f.read())["State"].split()[0]


def _pids(pyrun, cid) -> list[int]:
    return json.loads(pyrun("ps", "--format", "json", cid).stdout)


def _frozen_letter(paths: dict[str, str]) -> str:
    return "D" if any("freezer" in k.split(",") for k in paths) else "S"


def _moves(pid: int) -> bool:
    """The CPU loop in pid gets CPU time: waits until its ticks grow, fails if they never do."""
    before = _cpu_ticks(pid)
    return eventually(lambda: _cpu_ticks(pid) > before, what=f"pid {pid}'s CPU time to grow")


def _kernel_says_frozen(paths: dict[str, str]) -> str:
    """The freezer's own word for the cgroup: v1 freezer.state, v2 cgroup.events' frozen line.
    Only the kernel's FROZEN/frozen 1 means every task is held; nothing needs to be watched
    standing still (which a slow host would fake)."""
    if set(paths) == {""}:
        with open(os.path.join(paths[""], "cgroup.events")) as f:
            return next(line for line in f.read().splitlines() if line.startswith("frozen "))
    v1 = next(p for k, p in paths.items() if "freezer" in k.split(","))
    with open(os.path.join(v1, "freezer.state")) as f:
        return f.read().strip()


@pytest.fixture
def busy(pyrun, bundle):
    """A running container: a CPU loop as init plus two sleeping children."""
    bundle.set_args("sh", "-c", f"sleep 1000 & sleep 1000 & {LOOP}")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    eventually(lambda: len(_pids(pyrun, cid)) >= 3, what="init and two sleeps")
    yield cid
    pyrun("delete", "--force", cid)


def test_pause_freezes_every_process_and_resume_thaws_them(pyrun, busy):
    """Checked: with freeze() a no-op, status stays running and the loop keeps moving."""
    cid = busy
    init = pyrun.state(cid)["pid"]
    pids = _pids(pyrun, cid)
    assert len(pids) == 3 and init in pids
    with open(pyrun.root / cid / "state.json") as f:
        paths = json.load(f)["cgroup_paths"]
    assert _moves(init)

    pyrun("pause", cid)
    assert pyrun.state(cid)["status"] == "paused"
    letters = {pid: _state_letter(pid) for pid in pids}
    assert set(letters.values()) == {_frozen_letter(paths)}, letters
    assert _kernel_says_frozen(paths) == ("frozen 1" if set(paths) == {""} else "FROZEN")
    # `list` agrees, and exec is refused while paused
    listed = json.loads(pyrun("list", "--format", "json").stdout)
    assert [s["status"] for s in listed if s["id"] == cid] == ["paused"]
    res = pyrun("exec", cid, "true", check=False)
    assert res.returncode != 0 and "cannot exec in a paused container" in res.stderr

    pyrun("resume", cid)
    assert pyrun.state(cid)["status"] == "running"
    assert _moves(init)
    assert all(_state_letter(pid) in ("R", "S") for pid in pids)


def _error(pyrun, *args) -> str:
    res = pyrun(*args, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1, res
    entries = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    return entries[0]["msg"]


def test_pause_and_resume_errors_use_runcs_wording(pyrun, busy, bundle):
    cid = busy
    assert _error(pyrun, "resume", cid) == "container not paused"
    pyrun("pause", cid)
    assert _error(pyrun, "pause", cid) == "container not running"
    pyrun("resume", cid)
    assert _error(pyrun, "pause", ID_PREFIX + "missing") == "container does not exist"
    assert _error(pyrun, "resume", ID_PREFIX + "missing") == "container does not exist"
    assert _error(pyrun, "pause") == 'pyrun: "pause" requires exactly 1 argument(s)'
    assert _error(pyrun, "resume", cid, "extra") == 'pyrun: "resume" requires exactly 1 argument(s)'

    bundle.set_args("true")
    stopped = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), stopped)
    try:
        pyrun("start", stopped)
        pyrun.wait_status(stopped, "stopped")
        assert _error(pyrun, "pause", stopped) == "container not running"
        assert _error(pyrun, "resume", stopped) == "container not paused"
    finally:
        pyrun("delete", "--force", stopped)


def test_a_created_container_can_be_paused(pyrun, bundle):
    """runc pauses created containers too; start then runs the process once resumed."""
    bundle.set_args("sh", "-c", "echo started")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    try:
        pyrun("pause", cid)
        assert pyrun.state(cid)["status"] == "paused"
        pyrun("resume", cid)
        assert pyrun.state(cid)["status"] == "created"
    finally:
        pyrun("delete", "--force", cid)


def test_killing_and_deleting_a_paused_container(pyrun, busy, bundle):
    """SIGKILL reaches a paused container (it is thawed so the kill lands) and
    delete --force works on one."""
    cid = busy
    pyrun("pause", cid)
    pyrun("kill", cid, "KILL")
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    pyrun("delete", cid)

    bundle.set_args("sleep", "1000")
    other = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), other)
    pyrun("pause", other)
    pyrun("delete", "--force", other)
    assert not (pyrun.root / other).exists()


@pytest.fixture
def v2_dir():
    mounts = [h.mountpoint for h in detect().hierarchies if h.is_v2]
    if not mounts:
        pytest.skip("no cgroup2 mount")
    path = os.path.join(mounts[0], ID_PREFIX + "frz-" + uuid.uuid4().hex[:8])
    os.mkdir(path)
    yield path
    os.rmdir(path)


def _spin_in(*dirs: str) -> int:
    """Fork a CPU loop that has joined each cgroup directory; its pid once it has."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for d in dirs:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write("0")
            os.write(w, b"x")
            while True:
                pass
        finally:
            os._exit(1)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
    return pid


def test_v2_freezer_waits_for_frozen_and_thaws(v2_dir):
    """The cgroup.freeze path on a directory of the cgroup2 mount (the one a
    pure-v2 host uses), with a forked CPU loop inside."""
    pid = _spin_in(v2_dir)
    try:
        paths = {"": v2_dir}
        cgroup = load({"cgroup_paths": paths})
        assert _moves(pid)
        cgroup.freeze()
        assert _kernel_says_frozen(paths) == "frozen 1"    # the kernel's word: every task held
        assert cgroup.frozen()
        assert _state_letter(pid) == "S"
        cgroup.thaw()
        assert not cgroup.frozen()
        assert _moves(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_hybrid_without_v1_freezer_freezes_and_reports_through_cgroup2(v2_dir):
    """The review's disagreement: on a hybrid host without a v1 freezer, pause
    froze cgroup.freeze while status read no freezer ("running") and resume
    refused.  Now one method picks the freezer for freeze, thaw and frozen().
    A forked CPU loop sits in a v1 cpu directory and a cgroup2 one; the record
    names no freezer hierarchy.  Checked: with FsCgroup.frozen() skipping the
    cgroup2 directory on hybrid (the old status._frozen rule), frozen() is
    False while the kernel says `frozen 1`."""
    cpu = next((h for h in detect().hierarchies if "cpu" in h.key.split(",")), None)
    if cpu is None:
        pytest.skip("needs a hybrid host (a v1 cpu hierarchy beside cgroup2)")
    cpu_dir = os.path.join(cpu.mountpoint, ID_PREFIX + "frz-" + uuid.uuid4().hex[:8])
    os.mkdir(cpu_dir)
    pid = _spin_in(v2_dir, cpu_dir)
    try:
        paths = {"": v2_dir, cpu.key: cpu_dir}
        cgroup = load({"cgroup_paths": paths})
        assert not cgroup.frozen()
        cgroup.freeze()
        assert _kernel_says_frozen({"": v2_dir}) == "frozen 1"
        assert cgroup.frozen()
        cgroup.thaw()
        assert not cgroup.frozen()
        assert _moves(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        eventually(lambda: not Path(cpu_dir, "cgroup.procs").read_text().split(),
                   what="the loop to leave the cpu cgroup")
        os.rmdir(cpu_dir)
