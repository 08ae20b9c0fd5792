"""ps, events, kill --all and delete: the commands that act on the container's
cgroup as a whole."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import ID_PREFIX, NO_SIGNAL_LANDED, PYRUN, proc_state, untouched_by_signals
from pyrun.cgroups.layout import detect
from waiting import eventually

pytestmark = pytest.mark.cgroup

LOOP = "i=0; while :; do i=$((i+1)); done"


def _error(pyrun, *args) -> str:
    res = pyrun(*args, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1, res
    entries = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    return entries[0]["msg"]


def _pids(pyrun, cid) -> list[int]:
    return json.loads(pyrun("ps", "--format", "json", cid).stdout)


def _cgroup_paths(pyrun, cid) -> dict[str, str]:
    with open(pyrun.root / cid / "state.json") as f:
        return json.load(f)["cgroup_paths"]


def _wait_pids(pyrun, cid, count: int) -> list[int]:
    return eventually(lambda: len(pids := _pids(pyrun, cid)) >= count and pids,
                      what=f"{count} processes in {cid}")


@pytest.fixture
def sleeper(pyrun, bundle):
    """A running container: sh as init with two sleeping children."""
    bundle.set_args("sh", "-c", "sleep 1000 & sleep 1000 & wait; wait; sleep 1000")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    assert len(_wait_pids(pyrun, cid, 3)) == 3
    yield cid
    pyrun("delete", "--force", cid)


# --- ps ---------------------------------------------------------------------------

def test_ps_json_lists_the_host_pids_in_the_containers_cgroup(pyrun, sleeper):
    cid = sleeper
    pids = _pids(pyrun, cid)
    init = pyrun.state(cid)["pid"]
    assert init in pids and len(pids) == 3
    for pid in pids:
        with open(f"/proc/{pid}/cgroup") as f:
            assert cid in f.read()
    assert pyrun("ps", "-f", "json", cid).stdout.strip() == json.dumps(pids).replace(" ", "")


def test_ps_table_prints_the_header_and_the_containers_lines(pyrun, sleeper):
    cid = sleeper
    pids = _pids(pyrun, cid)
    out = pyrun("ps", cid).stdout.splitlines()
    assert out[0].split()[:3] == ["UID", "PID", "PPID"]          # ps -ef
    assert sorted(int(line.split()[1]) for line in out[1:]) == pids
    out = pyrun("ps", cid, "-o", "pid,comm").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"]
    assert sorted(line.split()[1] for line in out[1:]) == ["sh", "sleep", "sleep"]
    assert sorted(int(line.split()[0]) for line in out[1:]) == pids


def test_ps_errors(pyrun, sleeper):
    cid = sleeper
    assert _error(pyrun, "ps", "--format", "yaml", cid) == "invalid format option"
    assert _error(pyrun, "ps", cid, "-o", "comm") == "couldn't find PID field in ps output"
    assert _error(pyrun, "ps", ID_PREFIX + "missing") == "container does not exist"
    assert _error(pyrun, "ps") == 'pyrun: "ps" requires a minimum of 1 argument(s)'


# --- events -------------------------------------------------------------------------

def _stats(pyrun, cid) -> dict:
    lines = pyrun("events", "--stats", cid).stdout.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "stats" and event["id"] == cid
    return event["data"]


def test_events_stats_has_runcs_shape_and_moves_with_work(pyrun, bundle):
    """Checked: cpu.usage.total read from a file that does not change fails this."""
    bundle.set_args("sh", "-c", LOOP)
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        first = _stats(pyrun, cid)
        assert set(first) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                              "network_interfaces"}
        assert set(first["cpu"]) >= {"usage", "throttling"}
        assert {"kernel", "user"} <= set(first["cpu"]["usage"])
        paths = _cgroup_paths(pyrun, cid)
        # on pure v2 a controller's files exist only where the parent enabled it
        if set(paths) != {""} or os.path.exists(os.path.join(paths[""], "memory.current")):
            assert first["memory"]["usage"]["usage"] > 0 and "limit" in first["memory"]["usage"]
        if set(paths) != {""} or os.path.exists(os.path.join(paths[""], "pids.current")):
            assert first["pids"]["current"] == 1
        assert first["cpuset"]["cpus"]
        # the busy loop's CPU time must show up: wait for >0.1 s more of it
        second = eventually(lambda: (s := _stats(pyrun, cid))["cpu"]["usage"]["total"]
                            - first["cpu"]["usage"]["total"] > 100_000_000 and s,
                            what="cpu.usage.total to grow by 0.1 s")
        assert second["cpu"]["usage"]["user"] >= first["cpu"]["usage"]["user"]
    finally:
        pyrun("delete", "--force", cid)


def test_events_stream_ticks_and_ends_when_the_container_stops(pyrun, sleeper):
    cid = sleeper
    proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "events", "--interval", "200ms", cid],
                            stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        events = [json.loads(line) for line in lines]
        assert [e["type"] for e in events] == ["stats", "stats"]
        assert all(e["id"] == cid and "cpu" in e["data"] for e in events)
        pyrun("kill", cid, "KILL")
        rest = proc.stdout.read()
        assert proc.wait(timeout=10) == 0
        assert all(json.loads(line)["type"] == "stats" for line in rest.splitlines())
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_events_stream_ends_quietly_when_its_reader_goes_away(pyrun, sleeper):
    """`pyrun events ID | head -1`: a closed pipe ends the stream with exit 0
    (it once looped forever logging each failed write as a stats error)."""
    proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "events", "--interval", "50ms", sleeper],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline())["type"] == "stats"
        proc.stdout.close()
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def test_events_errors(pyrun, bundle):
    bundle.set_args("true")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        pyrun.wait_status(cid, "stopped")
        assert _error(pyrun, "events", "--stats", cid) == f"container with id {cid} is not running"
        assert _error(pyrun, "events", "--interval", "0s", cid) == "duration interval must be greater than 0"
        assert _error(pyrun, "events", "--interval", "5", cid) == \
            'invalid value "5" for flag -interval: parse error'
        assert _error(pyrun, "events", ID_PREFIX + "missing") == "container does not exist"
    finally:
        pyrun("delete", cid)


def _set_memory_limit(paths: dict[str, str], limit: int) -> None:
    """Written by hand: applying linux.resources is another module's job."""
    v1 = next((p for k, p in paths.items() if "memory" in k.split(",")), None)
    if v1 is None and not os.path.exists(os.path.join(paths[""], "memory.max")):
        pytest.skip("the memory controller is not enabled for the container's cgroup")
    if v1 is not None:
        for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
            if os.path.exists(os.path.join(v1, name)):
                Path(v1, name).write_text(str(limit))
    else:
        Path(paths[""], "memory.max").write_text(str(limit))
        if os.path.exists(os.path.join(paths[""], "memory.swap.max")):
            Path(paths[""], "memory.swap.max").write_text("0")


def test_events_reports_an_oom(pyrun, bundle):
    """A memory hog past the cgroup's limit shows up as an `oom` event."""
    bundle.set_args("sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 1000")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    try:
        _set_memory_limit(_cgroup_paths(pyrun, cid), 16 * 1024 * 1024)
        proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "events", "--interval", "60s", cid],
                                stdout=subprocess.PIPE, text=True)
        try:
            # the OOM source is registered before the hog starts: `events` sits
            # in poll(2) only once it is (x86_64 poll=7, ppoll=271)
            eventually(lambda: Path(f"/proc/{proc.pid}/syscall").read_text().split()[0] in ("7", "271"),
                       what="events to wait in poll")
            pyrun("start", cid)
            line = proc.stdout.readline()
            assert json.loads(line) == {"type": "oom", "id": cid}
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
    finally:
        pyrun("delete", "--force", cid)


# --- kill --all -----------------------------------------------------------------------

def test_kill_all_signals_every_process_not_just_the_init(pyrun, sleeper):
    """SIGTERM: without --all only the init (pid 1 of its namespace, so it
    ignores it) is signalled; with --all the two sleeps die too."""
    cid = sleeper
    pids = _pids(pyrun, cid)
    init = pyrun.state(cid)["pid"]
    pyrun("kill", cid, "TERM")
    # a TERM that reached a sleep is pending or has killed it by the time kill
    # returns (see untouched_by_signals): no sleep needed
    assert {p: untouched_by_signals(p) for p in pids if p != init} == \
        {p: NO_SIGNAL_LANDED for p in pids if p != init}
    assert _pids(pyrun, cid) == pids
    pyrun("kill", "--all", cid, "TERM")
    eventually(lambda: _pids(pyrun, cid) == [init], what="only the init left")
    assert pyrun.state(cid)["status"] == "running"      # the freezer was thawed again
    pyrun("kill", "-a", cid, "9")
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    pyrun("kill", "--all", cid, "KILL")                  # stopped: ignored with --all
    assert _error(pyrun, "kill", cid, "KILL") == "container not running"


# --- delete -------------------------------------------------------------------------------

def _leftovers(cid: str) -> list[str]:
    found = []
    for h in detect().hierarchies:
        for dirpath, dirnames, _files in os.walk(h.mountpoint):
            found += [os.path.join(dirpath, d) for d in dirnames if d.startswith(cid)]
    return found


def test_delete_removes_the_cgroup_in_every_hierarchy_even_with_sub_cgroups(pyrun, bundle):
    """No pid namespace, so the init's death kills nothing else: processes in
    the container's cgroup and in sub-cgroups of it must be killed and waited
    for before the directories can go.  Checked: with only the top-level
    procs signalled, delete fails with "unable to remove cgroup"."""
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "pid"]
    bundle.set_args("sh", "-c", "sleep 1000 & sleep 1000 & exec sleep 1000")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    paths = _cgroup_paths(pyrun, cid)
    assert len(paths) == len(detect().hierarchies) and all(os.path.isdir(p) for p in paths.values())
    pids = _wait_pids(pyrun, cid, 3)
    assert len(pids) == 3
    # move one child into a sub-cgroup in every hierarchy
    child = [p for p in pids if p != pyrun.state(cid)["pid"]][0]
    for key, path in paths.items():
        os.mkdir(os.path.join(path, "sub"))
        if "cpuset" in key.split(","):        # a fresh v1 cpuset is empty and takes no task
            for name in ("cpuset.cpus", "cpuset.mems"):
                Path(path, "sub", name).write_text(Path(path, name).read_text().strip())
        Path(path, "sub", "cgroup.procs").write_text(str(child))
    os.kill(pyrun.state(cid)["pid"], signal.SIGKILL)
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    assert child in _pids(pyrun, cid)             # still there after the init died
    pyrun("delete", cid)
    assert _leftovers(cid) == []
    assert not any(os.path.exists(p) for p in paths.values())
    assert proc_state(child) in ("gone", "Z", "X")


def test_delete_force_of_a_busy_container_leaves_no_cgroup(pyrun, bundle):
    bundle.set_args("sh", "-c", f"sleep 1000 & sleep 1000 & {LOOP}")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    assert len(_wait_pids(pyrun, cid, 3)) == 3
    pyrun("exec", "-d", cid, "sleep", "1000")
    pyrun("delete", "--force", cid)
    assert _leftovers(cid) == []
