"""Containers that fight back: ignore SIGTERM, fork hundreds of children and
exit, unmount and remount things, fill their tmpfs, exit their init while
exec'd processes live on, or name a cgroup that is not theirs.  `kill`,
`kill --all` and `delete --force` must always clean up (the `pyrun`
fixture's leak check: mounts, cgroups, processes, fds, state, netns, links)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import COUNTS, ID_PREFIX, NO_SIGNAL_LANDED, untouched_by_signals
from waiting import eventually

FORKS = 300


def _without_pid_namespace(bundle) -> None:
    ns = bundle.config["linux"]["namespaces"]
    bundle.config["linux"]["namespaces"] = [n for n in ns if n["type"] != "pid"]


def _cgroup_procs(pyrun, cid: str) -> set[int]:
    raw = json.loads((pyrun.root / cid / "state.json").read_text())
    pids: set[int] = set()
    for path in raw["cgroup_paths"].values():
        for dirpath, _dirs, _files in os.walk(path):
            try:
                pids |= {int(p) for p in Path(dirpath, "cgroup.procs").read_text().split()}
            except OSError:
                pass
    return pids


def _hostile(pyrun, bundle, script: str) -> str:
    bundle.set_args("sh", "-c", script)
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    COUNTS["hostile containers"] += 1
    return cid


def _all_gone(pyrun, cid: str) -> None:
    assert pyrun("state", cid, check=False).returncode != 0
    assert not (pyrun.root / cid).exists()


@pytest.mark.parametrize("how", ["kill KILL", "delete --force"])
def test_ignores_sigterm(pyrun, bundle, how):
    cid = _hostile(pyrun, bundle, "trap '' TERM INT HUP; while :; do sleep 1; done")
    init = pyrun.state(cid)["pid"]
    pyrun("kill", cid, "TERM")
    # it really ignores TERM: a TERM (or a KILL) that would end it is pending
    # or has ended it by the time kill returns (see untouched_by_signals)
    assert untouched_by_signals(init) == NO_SIGNAL_LANDED
    assert pyrun.state(cid)["status"] == "running"
    if how == "kill KILL":
        pyrun("kill", cid, "KILL")
        assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
        pyrun("delete", cid)
    else:
        pyrun("delete", "--force", cid)
    _all_gone(pyrun, cid)


@pytest.mark.parametrize("pidns", [True, False], ids=["pidns", "no-pidns"])
@pytest.mark.parametrize("how", ["delete", "kill --all", "delete --force"])
def test_forks_hundreds_and_exits(pyrun, bundle, pidns, how):
    """Without a pid namespace the init's exit kills nothing: the children
    live on in the cgroup, and pyrun must find them there."""
    if not pidns:
        _without_pid_namespace(bundle)
    if how == "kill --all":      # the init stays to see them killed around it
        script = f"i=0; while [ $i -lt {FORKS} ]; do sleep 1000 & i=$((i+1)); done; wait"
    else:
        script = f"i=0; while [ $i -lt {FORKS} ]; do sleep 1000 & i=$((i+1)); done; exit 0"
    cid = _hostile(pyrun, bundle, script)
    if how == "kill --all":
        eventually(lambda: len(_cgroup_procs(pyrun, cid)) >= FORKS + 1, 10, f"{FORKS} children forked")
        pyrun("kill", "--all", cid, "KILL")
        eventually(lambda: not _cgroup_procs(pyrun, cid), 10, "an empty cgroup")
        assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
        pyrun("delete", cid)
    else:
        assert pyrun.wait_status(cid, "stopped", timeout=20)["status"] == "stopped"
        left = _cgroup_procs(pyrun, cid)
        if pidns:
            eventually(lambda: not _cgroup_procs(pyrun, cid), 10, "an empty cgroup")   # pid 1 took them along
        else:
            assert len(left) >= FORKS, len(left)                  # orphans, still in our cgroup
        pyrun(*how.split(), cid)
    _all_gone(pyrun, cid)


def test_unmounts_and_remounts_inside(pyrun, bundle):
    caps = bundle.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = caps[kind] + ["CAP_SYS_ADMIN"]
    bundle.config["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"})
    # remount,bind,ro: a plain remount,ro of a bind mount would flip the
    # superblock, the host's own filesystem; CAP_SYS_ADMIN without a user
    # namespace is root on the host, and no runtime can stop that.
    script = ("umount -l /dev/shm; umount /mnt; mount -t tmpfs t /mnt; mount -t tmpfs t /tmp;"
              " mount --bind /tmp /mnt; mount -o remount,bind,ro /; umount -l /proc; umount -l /dev/pts;"
              " touch /mnt/done; sleep 1000")
    cid = _hostile(pyrun, bundle, script)
    pid = json.loads((pyrun.root / cid / "state.json").read_text())["init_process_pid"]
    eventually(lambda: os.path.exists(f"/proc/{pid}/root/mnt/done"), 10, "the script to finish")
    targets = {line.split()[1]: line.split()[3] for line in Path(f"/proc/{pid}/mounts").read_text().splitlines()}
    assert "/proc" not in targets and "/dev/pts" not in targets and "/dev/shm" not in targets, targets
    assert targets["/"].startswith("ro"), targets
    pyrun("kill", cid, "KILL")
    pyrun.wait_status(cid, "stopped")
    pyrun("delete", cid)
    _all_gone(pyrun, cid)


@pytest.mark.parametrize("target", ["/data", "/dev", "/dev/shm"])
def test_fills_its_tmpfs(pyrun, bundle, target):
    bundle.config["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["size=1m"]})
    script = (f"dd if=/dev/zero of={target}/fill bs=64k count=1500 2>/dev/null;"
              f" echo $? > /tmp/dd.rc; df {target} > /tmp/df; while :; do sleep 1; done")
    cid = _hostile(pyrun, bundle, script)
    eventually(lambda: pyrun("exec", cid, "cat", "/tmp/dd.rc", check=False).stdout.strip() != "", 10, "dd to finish")
    assert pyrun("exec", cid, "cat", "/tmp/dd.rc").stdout.strip() != "0"      # ENOSPC, not the host's disk
    used = pyrun("exec", cid, "cat", "/tmp/df").stdout.splitlines()[-1].split()
    assert used[-2] == "100%", used
    assert pyrun.state(cid)["status"] == "running"
    pyrun("delete", "--force", cid)
    _all_gone(pyrun, cid)


@pytest.mark.parametrize("pidns", [True, False], ids=["pidns", "no-pidns"])
def test_init_exits_while_exec_lives_on(pyrun, bundle, pidns):
    if not pidns:
        _without_pid_namespace(bundle)
    cid = _hostile(pyrun, bundle, "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 3")
    for _ in range(3):
        pyrun("exec", "-d", cid, "sh", "-c", "trap '' TERM; sleep 1000")
    eventually(lambda: len(_cgroup_procs(pyrun, cid)) >= 4, 10, "init and three execs in the cgroup")
    pyrun("exec", cid, "touch", "/tmp/go")
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    left = _cgroup_procs(pyrun, cid)
    if pidns:
        eventually(lambda: not _cgroup_procs(pyrun, cid), 10, "an empty cgroup")
    else:
        assert len(left) >= 3, left          # the exec'd processes outlived the init
        assert pyrun("exec", cid, "true", check=False).returncode != 0   # stopped: no more exec
        pyrun("kill", "--all", cid, "TERM")   # they ignore TERM: nothing changes
        assert {pid: untouched_by_signals(pid) for pid in left} == {pid: NO_SIGNAL_LANDED for pid in left}
        assert _cgroup_procs(pyrun, cid) == left
    pyrun("delete", cid)
    _all_gone(pyrun, cid)


def test_occupied_cgroup_is_refused(pyrun, bundle):
    """cgroupsPath naming a cgroup that already holds a process (here: ours,
    a sleep) must be refused at create: otherwise `delete` would SIGKILL
    whatever lives there (with "/" as the path: the whole host).
    Checked: with create._refuse_occupied checking nothing, create exits 0
    into the occupied cgroup and the first assert fails."""
    name = f"{ID_PREFIX}occupied-{uuid.uuid4().hex[:6]}"
    hierarchy = Path("/sys/fs/cgroup/pids") if Path("/sys/fs/cgroup/pids").is_dir() else Path("/sys/fs/cgroup/unified")
    sleeper = subprocess.Popen(["sleep", "60"])
    occupied = hierarchy / name
    try:
        occupied.mkdir()
        (occupied / "cgroup.procs").write_text(str(sleeper.pid))
        bundle.config["linux"]["cgroupsPath"] = "/" + name
        bundle.write()
        res = pyrun("create", "-b", str(bundle.path), pyrun.new_id(), check=False,
                    global_args=("--log-format", "json"))
        assert res.returncode == 1
        entries = [json.loads(line) for line in res.stderr.splitlines()]
        assert [e["level"] for e in entries] == ["error"], res.stderr
        # runc >= 1.2's refusal, word for word (runc 1.1 only warned)
        assert entries[0]["msg"] == "pyrun create failed: container's cgroup is not empty: 1 process(es) found"
        assert untouched_by_signals(sleeper.pid) == NO_SIGNAL_LANDED   # delete did not kill it
        assert occupied.is_dir()                      # not removed either
    finally:
        sleeper.kill()
        sleeper.wait()
        for top in Path("/sys/fs/cgroup").iterdir():
            if (top / name).is_dir():
                with contextlib.suppress(AssertionError):   # the test's own failure matters more
                    eventually(lambda: not (top / name / "cgroup.procs").read_text().split(), 5, "an empty cgroup")
                (top / name).rmdir()


@pytest.mark.parametrize("command", [("run", "-d"), ("create",)])
def test_frozen_cgroup_is_refused_at_once(pyrun, bundle, command):
    """A cgroupsPath naming a cgroup someone froze beforehand: the init would
    freeze as it joins and `run -d`/`create` wait for it forever.  runc
    refuses it at once: exit 1, "container's cgroup unexpectedly frozen",
    and the cgroup (not ours) stays.  Checked: without create's manager.frozen() check,
    `run -d` hangs until this test's timeout (TimeoutExpired)."""
    freezer = Path("/sys/fs/cgroup/freezer")
    if not freezer.is_dir():
        pytest.skip("no cgroup v1 freezer hierarchy on this host")
    name = f"{ID_PREFIX}frozen-{uuid.uuid4().hex[:6]}"
    frozen = freezer / name
    frozen.mkdir()
    try:
        (frozen / "freezer.state").write_text("FROZEN")
        bundle.config["linux"]["cgroupsPath"] = "/" + name
        bundle.write()
        cid = pyrun.new_id()
        res = pyrun(*command, "-b", str(bundle.path), cid, check=False, timeout=60,
                    global_args=("--log-format", "json"))
        assert res.returncode == 1, res.stderr
        entries = [json.loads(line) for line in res.stderr.splitlines()]
        assert [(e["level"], e["msg"]) for e in entries] == [
            ("error", f"pyrun {command[0]} failed: container's cgroup unexpectedly frozen")], res.stderr
        assert not (pyrun.root / cid).exists()
        assert (frozen / "freezer.state").read_text().strip() == "FROZEN"
        assert not (frozen / "cgroup.procs").read_text().split()
    finally:
        (frozen / "freezer.state").write_text("THAWED")
        for top in Path("/sys/fs/cgroup").iterdir():
            if (top / name).is_dir():
                (top / name).rmdir()
