"""State that tells the truth: pid reuse, locking, keyrings, inherited fds."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

from conftest import PYRUN
from waiting import eventually


def test_status_survives_pid_reuse(pyrun, bundle):
    """A different process under the recorded pid is not the container."""
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    state_file = pyrun.root / cid / "state.json"
    state = json.loads(state_file.read_text())
    assert pyrun.state(cid)["status"] == "running"
    state["init_process_start"] += 1          # as if the pid now belonged to someone else
    state_file.write_text(json.dumps(state))
    assert pyrun.state(cid)["status"] == "stopped"
    state["init_process_start"] -= 1
    state_file.write_text(json.dumps(state))
    pyrun("delete", "-f", cid)


def test_commands_on_one_container_serialize(pyrun, bundle):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    fd = os.open(pyrun.root / cid, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)        # another command holds the container
        start = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "start", cid],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Positive signal instead of a sleep: the kernel lists `start` as a waiter
        # on our flock ("->" in /proc/locks). A start that took no lock never
        # shows up there and runs to the end, so this times out and fails.
        eventually(lambda: any(line.split()[1:2] == ["->"] and str(start.pid) in line.split()
                               for line in Path("/proc/locks").read_text().splitlines()),
                   what="start to block on the container's lock")
        assert start.poll() is None, "start ran while the container was locked"
        assert pyrun.state(cid)["status"] == "created"   # reads need no lock
    finally:
        os.close(fd)
    assert start.wait(timeout=10) == 0
    assert pyrun.state(cid)["status"] == "running"
    pyrun("delete", "-f", cid)


def _session_keyrings() -> str:
    with open("/proc/keys") as f:
        return f.read()


def test_new_session_keyring_unless_no_new_keyring(pyrun, bundle):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    assert f"_ses.{cid}" in _session_keyrings()
    pyrun("delete", "-f", cid)
    cid = pyrun.new_id()
    pyrun("create", "--no-new-keyring", "-b", str(bundle.path), cid)
    assert f"_ses.{cid}" not in _session_keyrings()
    pyrun("delete", "-f", cid)


def test_listen_fds_are_passed_like_systemd_socket_activation(pyrun, bundle):
    bundle.set_args("sh", "-c", "echo LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID; "
                    "echo via-fd3 >&3; ls /proc/self/fd")
    r, w = os.pipe()
    # fd 3 of pyrun is the pipe; LISTEN_PID must be pyrun's own pid, so exec from sh.
    cmd = f"LISTEN_FDS=1 LISTEN_PID=$$ exec {PYRUN} --root {pyrun.root} run -b {bundle.path} {pyrun.new_id()}"
    try:
        out = subprocess.run(["sh", "-c", cmd], preexec_fn=lambda: os.dup2(w, 3), close_fds=False,
                             capture_output=True, text=True, timeout=30)
    finally:
        os.close(w)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[:2] == ["LISTEN_FDS=1", "LISTEN_PID=1"]
    assert os.read(r, 100) == b"via-fd3\n"
    os.close(r)
    fds = set(lines[2:])
    assert "3" in fds and not fds - {"0", "1", "2", "3", "4"}   # 4: the fd ls itself opens


def test_unlimited_rlimit(pyrun, bundle):
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1}]
    bundle.set_args("sh", "-c", "ulimit -c")
    assert pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout == "unlimited\n"


def test_sigterm_ends_a_created_container(pyrun, bundle):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    pyrun("kill", cid, "TERM")
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    pyrun("delete", cid)


def test_a_created_container_holds_none_of_the_callers_leaked_fds(pyrun, bundle):
    """A caller that reads a pipe to EOF must not hang because the waiting
    init inherited the write end (runc's init never sees such fds).
    Checked: without stages._close_inherited_fds the pipe stays open."""
    import select
    bundle.set_args("sleep", "300")
    r, w = os.pipe()
    os.set_inheritable(w, True)
    cid = pyrun.new_id()
    try:
        pyrun("create", "-b", str(bundle.path), cid, close_fds=False)
    finally:
        os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], 5)
        assert ready and os.read(r, 16) == b"", "the created init still holds the caller's pipe"
    finally:
        os.close(r)
    pyrun("delete", "-f", cid)
