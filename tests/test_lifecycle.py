"""create / start / state / kill / delete / run / list on real containers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import PYRUN, proc_state
from waiting import eventually


def test_run_shows_the_container_its_own_world(pyrun, bundle):
    bundle.config["hostname"] = "inside"
    bundle.set_args("sh", "-c", "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; "
                    "cat /proc/self/mountinfo; ip -o link show lo; id -u")
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout
    lines = out.splitlines()
    assert lines[0] == "pid=1"
    assert lines[1] == "inside"
    # a fresh pid namespace: only the shell and its pipeline children are there
    assert int(lines[2]) < 6
    mounts = {line.split()[4]: line for line in lines if " - " in line}
    assert mounts["/proc"].split(" - ")[1].startswith("proc ")
    assert mounts["/"].split()[3] == str(bundle.rootfs)
    assert "/dev/pts" in mounts and "/sys" in mounts and "/dev/shm" in mounts
    lo = next(line for line in lines if ": lo:" in line)
    assert ",UP" in lo
    assert lines[-1] == "0"


def test_create_start_kill_delete(pyrun, bundle, tmp_path):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pid_file = tmp_path / "init.pid"
    created = pyrun("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), cid)
    assert created.stdout == "" and created.stderr == ""
    st = pyrun.state(cid)
    pid = int(pid_file.read_text())
    assert st["status"] == "created" and st["pid"] == pid and st["id"] == cid
    assert st["bundle"] == str(bundle.path) and st["ociVersion"] == bundle.config["ociVersion"]
    # the init is pid 1 of its own pid namespace and waits for start, not yet running sleep
    nspid = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                 if line.startswith("NSpid:")).split()
    assert nspid[-1] == "1"
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep"
    assert (pyrun.root / cid / "exec.fifo").exists()

    pyrun("start", cid)
    st = pyrun.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    assert not (pyrun.root / cid / "exec.fifo").exists()
    eventually(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep",
               what="the init to exec sleep")

    pyrun("kill", cid, "KILL")
    st = pyrun.wait_status(cid, "stopped")
    assert st["status"] == "stopped" and st["pid"] == 0
    cgroups = json.loads((pyrun.root / cid / "state.json").read_text())["cgroup_paths"]
    assert cgroups and all(os.path.isdir(p) for p in cgroups.values())
    pyrun("delete", cid)
    assert not (pyrun.root / cid).exists()
    assert not any(os.path.exists(p) for p in cgroups.values())
    gone = pyrun("state", cid, check=False)
    assert gone.returncode == 1 and "container does not exist" in gone.stderr


def test_delete_refuses_live_containers_without_force(pyrun, bundle):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    res = pyrun("delete", cid, check=False)
    assert res.returncode == 1
    assert f"cannot delete container {cid} that is not stopped: created" in res.stderr
    assert pyrun.state(cid)["status"] == "created"     # no effect on the container
    pyrun("start", cid)
    res = pyrun("delete", cid, check=False)
    assert res.returncode == 1 and "that is not stopped: running" in res.stderr
    assert pyrun.state(cid)["status"] == "running"
    pid = pyrun.state(cid)["pid"]
    pyrun("delete", "--force", cid)
    assert not (pyrun.root / cid).exists()
    assert proc_state(pid) in ("gone", "Z")


def test_delete_force_of_a_missing_container_succeeds(pyrun):
    assert pyrun("delete", "--force", "pyrun-t-nothere").returncode == 0
    res = pyrun("delete", "pyrun-t-nothere", check=False)
    assert res.returncode == 1 and "container does not exist" in res.stderr


def test_start_errors_follow_runc(pyrun, bundle):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    pyrun("start", cid)
    again = pyrun("start", cid, check=False)
    assert again.returncode == 1 and "cannot start an already running container" in again.stderr
    pyrun("kill", cid, "9")
    pyrun.wait_status(cid, "stopped")
    stopped = pyrun("start", cid, check=False)
    assert stopped.returncode == 1 and "cannot start a container that has stopped" in stopped.stderr
    res = pyrun("kill", cid, "SIGKILL", check=False)
    assert res.returncode == 1 and "container not running" in res.stderr
    assert pyrun("kill", "--all", cid, "9").returncode == 0     # runc ignores not-running with --all
    pyrun("delete", cid)


@pytest.mark.parametrize("sig", ["15", "TERM", "SIGTERM", "term"])
def test_kill_signal_spellings(pyrun, bundle, sig):
    bundle.set_args("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    pyrun("kill", cid, sig)
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    pyrun("delete", cid)


def test_kill_all_signals_every_process(pyrun, bundle):
    bundle.set_args("sh", "-c", "sleep 300 & sleep 300 & wait")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    paths = json.loads((pyrun.root / cid / "state.json").read_text())["cgroup_paths"]
    cgroup = paths.get("pids", paths.get(""))       # v1/hybrid: the pids hierarchy; v2: the one
    eventually(lambda: len(Path(cgroup, "cgroup.procs").read_text().split()) >= 3, what="sh and two sleeps")
    pyrun("kill", "--all", cid, "KILL")
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    pyrun("delete", cid)


def test_kill_of_a_host_pidns_container_whose_init_is_gone_kills_the_rest(pyrun, bundle, tmp_path):
    """No pid namespace: the init dies, exec'd processes live on in the cgroup; `kill KILL`
    kills them and succeeds (runc 1.2+ kill.bats "kill KILL [host pidns + init gone]").
    Before: "container not running", exit 1, and the sleeps left running."""
    bundle.config["linux"]["namespaces"] = [ns for ns in bundle.config["linux"]["namespaces"]
                                            if ns["type"] != "pid"]
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    pids = []
    for n in range(3):
        pid_file = tmp_path / f"exec{n}.pid"
        pyrun("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "301")
        pids.append(int(pid_file.read_text()))
    os.kill(pyrun.state(cid)["pid"], signal.SIGKILL)
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    assert [proc_state(pid) for pid in pids] == ["S", "S", "S"]      # still alive after the init

    res = pyrun("kill", cid, "KILL", check=False)
    assert (res.returncode, res.stderr) == (0, "")
    eventually(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), what="exec'd sleeps gone")
    pyrun("delete", cid)


def test_kill_of_a_stopped_container_with_its_own_pidns_is_not_running(pyrun, bundle):
    bundle.set_args("true")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    pyrun.wait_status(cid, "stopped")
    res = pyrun("kill", cid, "KILL", check=False)
    assert res.returncode == 1 and 'msg="container not running"' in res.stderr
    pyrun("delete", cid)


def test_unknown_signal_is_an_error(pyrun, bundle):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    res = pyrun("kill", cid, "SIGNOPE", check=False)
    assert res.returncode == 1 and "SIGNOPE" in res.stderr
    pyrun("delete", "-f", cid)


def test_run_exit_status_and_signals(pyrun, bundle):
    bundle.set_args("sh", "-c", "exit 3")
    assert pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False).returncode == 3

    bundle.set_args("sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done")
    cid = pyrun.new_id()
    proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "run", "-b", str(bundle.path), cid],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)          # forwarded to the container
    assert proc.wait(timeout=10) == 42
    assert not (pyrun.root / cid).exists()    # run removes the container unless --keep

    bundle.set_args("sh", "-c", "echo ready; exec sleep 300")
    cid = pyrun.new_id()
    proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "run", "--keep", "-b",
                             str(bundle.path), cid], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    pyrun("kill", cid, "KILL")
    assert proc.wait(timeout=10) == 128 + 9
    assert pyrun.state(cid)["status"] == "stopped"   # --keep leaves it for us
    pyrun("delete", cid)


def test_stdio_is_handed_through_untouched(pyrun, bundle):
    bundle.set_args("sh", "-c", "read line; echo got:$line; echo err >&2")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), input="hello\n")
    assert res.stdout == "got:hello\n" and res.stderr == "err\n"


def _read_to_eof(fd: int, timeout: float = 10.0) -> bytes:
    """All of a pipe until EOF; AssertionError if it stays open past `timeout`."""
    import select
    import time
    data, deadline = b"", time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], f"no EOF after {timeout}s: {data!r}"
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def test_created_container_keeps_the_pipes_create_was_given(pyrun, bundle):
    """Without a terminal the container process inherits `create`'s stdio as
    is, as runc's does (runtime-tools reads runtimetest's report so): its
    output reaches the pipes create was given, after create has exited and
    start has run, and they reach EOF when the container exits."""
    bundle.set_args("sh", "-c", "echo out; echo err >&2")
    cid = pyrun.new_id()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pyrun("create", "-b", str(bundle.path), cid, stdout=out_w, stderr=err_w, text=False)
        os.close(out_w)
        os.close(err_w)
        out_w = err_w = -1
        assert pyrun.state(cid)["status"] == "created"
        pyrun("start", cid)
        # to EOF: the container exited, and nothing else holds the pipes
        assert (_read_to_eof(out_r), _read_to_eof(err_r)) == (b"out\n", b"err\n")
        pyrun.wait_status(cid, "stopped")
        pyrun("delete", cid)
    finally:
        for fd in (out_r, out_w, err_r, err_w):
            if fd >= 0:
                os.close(fd)


def test_list_and_state_formats(pyrun, bundle):
    bundle.set_args("sleep", "300")
    ids = [pyrun.new_id(), pyrun.new_id()]
    for cid in ids:
        pyrun("run", "-d", "-b", str(bundle.path), cid)
    table = pyrun("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    for cid in ids:
        assert rows[cid][2] == "running" and rows[cid][5] == "root"
    listed = {s["id"]: s for s in json.loads(pyrun("list", "--format=json").stdout)}
    assert set(ids) <= set(listed)
    assert listed[ids[0]] == pyrun.state(ids[0])
    assert set(pyrun("list", "-q").stdout.split()) >= set(ids)
    st = pyrun.state(ids[0])
    assert list(st)[:7] == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created"]
    for cid in ids:
        pyrun("delete", "-f", cid)


def test_list_of_no_containers_is_json_null_as_runc(tmp_path):
    (tmp_path / "empty").mkdir()
    r = subprocess.run([str(PYRUN), "--root", str(tmp_path / "empty"), "list", "--format", "json"],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "null\n", "")


def test_list_with_a_root_given_that_does_not_exist_fails_as_runc(tmp_path):
    """runc 1.5's list.bats "list with non-existent root fails"; pyrun listed nothing."""
    missing = tmp_path / "missing" / "state"
    r = subprocess.run([str(PYRUN), "--root", str(missing), "--log-format", "json", "list"],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (1, "")
    entries = [json.loads(line) for line in r.stderr.splitlines()]
    assert [(e["level"], e["msg"]) for e in entries] == [("error", f"open {missing}: no such file or directory")]
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs on /run in a mount namespace of its own")
def test_list_with_the_default_root_missing_lists_nothing(tmp_path):
    """runc 1.5's "list with default non-existent root succeeds": no containers
    made yet.  /run/pyrun is hidden by a fresh /run in a private mount namespace."""
    script = f'mount -t tmpfs tmpfs /run && test ! -e /run/pyrun && exec {PYRUN} --log-format json list'
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout.split(), r.stderr) == (0, ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], "")


def test_state_validates_against_our_state_schema(pyrun, bundle):
    from pyrun.spec.schema_loader import load_validator
    bundle.config["annotations"] = {"org.example.key": "value"}
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    st = pyrun.state(cid)
    assert st["annotations"] == {"org.example.key": "value"}
    load_validator("state").validate(st)
    pyrun("delete", "-f", cid)


def test_concurrent_creates_of_one_id_exactly_one_wins(pyrun, bundle, tmp_path):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    cmd = [str(PYRUN), "--root", str(pyrun.root), "create", "-b", str(bundle.path), cid]
    errs = [tmp_path / f"err{i}" for i in range(4)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=e.open("w")) for e in errs]
    results = [(p.wait(timeout=30), e.read_text()) for p, e in zip(procs, errs)]
    winners = [r for r in results if r[0] == 0]
    assert len(winners) == 1, results
    assert all("container with given ID already exists" in err for rc, err in results if rc != 0)
    assert pyrun.state(cid)["status"] == "created"
    pyrun("delete", "-f", cid)


def test_pid_file_is_written_atomically_in_place(pyrun, bundle, tmp_path):
    pid_file = tmp_path / "p.pid"
    pid_file.write_text("99999999999")        # a longer stale value must not survive
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), "--pid-file", str(pid_file), cid)
    assert pid_file.read_text() == str(pyrun.state(cid)["pid"])
    assert not list(tmp_path.glob(".p.pid*"))
    pyrun("delete", "-f", cid)


def test_version_has_runcs_three_line_shape(pyrun):
    lines = pyrun("--version").stdout.splitlines()
    assert lines[0].startswith("pyrun version ")
    assert lines[1].startswith("commit: ")
    assert lines[2] == "spec: 1.3.0"


def test_flag_spellings_urfave_style(pyrun, bundle):
    bundle.set_args("true")
    for args in (["run", f"--bundle={bundle.path}"], ["run", "-bundle", str(bundle.path)],
                 ["run", "-b", str(bundle.path)]):
        assert pyrun(*args, pyrun.new_id()).returncode == 0
    res = subprocess.run([str(PYRUN), f"--root={pyrun.root}", "--log-format=json", "list", "-q"],
                         capture_output=True, text=True)
    assert res.returncode == 0
