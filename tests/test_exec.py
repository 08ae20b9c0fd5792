"""exec: a new process inside a running container, with the init's confinement."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PYRUN, runs_our_interpreter, status_fields


def _ns_links(pid: int) -> dict[str, str]:
    return {ns: os.readlink(f"/proc/{pid}/ns/{ns}")
            for ns in ("mnt", "uts", "ipc", "net", "pid", "cgroup", "user")}


def test_exec_joins_every_namespace_and_the_cgroup(pyrun, running, tmp_path):
    init = pyrun.state(running)["pid"]
    pid_file = tmp_path / "exec.pid"
    pyrun("exec", "-d", "--pid-file", str(pid_file), running, "sleep", "30")
    pid = int(pid_file.read_text())
    assert _ns_links(pid) == _ns_links(init)
    assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()
    status = Path(f"/proc/{pid}/status").read_text()
    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()
    assert len(nspid) == 3 and nspid[-1] != "1"      # host pid, then its pid inside
    os.kill(pid, signal.SIGKILL)


def test_exec_sees_what_the_container_sees(pyrun, running):
    out = pyrun("exec", running, "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                "readlink /proc/self/ns/mnt; readlink /proc/1/ns/mnt; pwd").stdout.splitlines()
    assert out[0] == "pyrun"
    assert out[1].strip() == "sleep 300"
    assert out[2] == out[3]
    assert out[4] == "/"


def test_exec_flags(pyrun, running):
    out = pyrun("exec", "--user", "1000:1000", "--additional-gids", "20", "--cwd", "/tmp",
                "-e", "FOO=bar", "--no-new-privs", running,
                "sh", "-c", "id; pwd; echo $FOO; grep -E '^NoNewPrivs' /proc/self/status").stdout
    lines = out.splitlines()
    assert lines[0].startswith("uid=1000 gid=1000") and "20" in lines[0]
    assert lines[1:4] == ["/tmp", "bar", "NoNewPrivs:\t1"]
    # --cap adds to bounding, effective and permitted (not ambient, as runc): visible as root
    caps = pyrun("exec", "--cap", "CAP_NET_RAW", running, "grep", "CapEff", "/proc/self/status").stdout
    without = pyrun("exec", running, "grep", "CapEff", "/proc/self/status").stdout
    assert int(caps.split()[1], 16) & (1 << 13) and not int(without.split()[1], 16) & (1 << 13)


def test_exec_process_file(pyrun, running, tmp_path):
    process = {"args": ["sh", "-c", "echo from-file $X; id -u"], "env": ["X=1", "PATH=/bin"],
               "cwd": "/", "user": {"uid": 7, "gid": 7}, "terminal": False}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    assert pyrun("exec", "--process", str(path), running).stdout.split() == ["from-file", "1", "7"]


def test_exec_exit_status_and_errors(pyrun, running):
    assert pyrun("exec", running, "sh", "-c", "exit 9", check=False).returncode == 9
    res = pyrun("exec", running, "nosuch", check=False)
    assert res.returncode == 255     # runc: every exec failure exits 255
    assert 'exec: "nosuch": executable file not found in $PATH' in res.stderr.replace('\\"', '"')
    res = pyrun("exec", "pyrun-t-nothere", "true", check=False)
    assert res.returncode == 255 and "container does not exist" in res.stderr


def test_exec_exit_status_is_never_lost(pyrun, running, tmp_path):
    """Stage 1's INIT_PID and the exec'd process's first messages share one
    socket: an exec'd process with few steps (a --process file without
    capabilities) used to overtake INIT_PID about once in 20, and `exec` then
    waited for pid 0 and exited 255 instead of the process's status."""
    path = tmp_path / "process.json"
    path.write_text(json.dumps({"args": ["sh", "-c", "exit 3"], "cwd": "/", "env": ["PATH=/bin"],
                                "user": {"uid": 7, "gid": 7}}))
    codes = [pyrun("exec", "--process", str(path), running, check=False).returncode for _ in range(100)]
    assert codes == [3] * 100


def test_exec_into_a_stopped_container_fails(pyrun, bundle):
    bundle.set_args("true")
    cid = pyrun.new_id()
    pyrun("run", "--keep", "-b", str(bundle.path), cid)
    res = pyrun("exec", cid, "true", check=False)
    assert res.returncode == 255 and "cannot exec in a stopped container" in res.stderr
    pyrun("delete", cid)


def test_exec_stdio_and_signals(pyrun, running):
    res = pyrun("exec", running, "sh", "-c", "read x; echo got:$x; echo err >&2", input="hi\n")
    assert res.stdout == "got:hi\n" and res.stderr == "err\n"
    proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "exec", running, "sh", "-c",
                             "trap 'exit 33' TERM; echo ready; while :; do sleep 0.05; done"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 33


def test_exec_process_starts_with_default_signal_dispositions(pyrun, running):
    """As the init's program (test_process.py), the exec'd one: nothing the
    caller ignored or blocked, nor pyrun's handlers. Checked: with the reset
    loop in exec_process removed, SigIgn and SigCgt are non-zero."""
    from test_process import caller_with_odd_signals
    out = pyrun("exec", running, "cat", "/proc/self/status", preexec_fn=caller_with_odd_signals).stdout
    fields = status_fields(out)
    assert {k: fields[k] for k in ("SigBlk", "SigIgn", "SigCgt")} == {
        "SigBlk": "0" * 16, "SigIgn": "0" * 16, "SigCgt": "0" * 16}


def test_exec_with_console_socket(pyrun, running, tmp_path):
    import socket
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    try:
        pyrun("exec", "-d", "-t", "--console-socket", path, running, "sh", "-c", "tty; echo done")
        conn, _ = server.accept()
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        conn.close()
        assert len(fds) == 1
        out = b""
        deadline = time.monotonic() + 5
        while b"done" not in out and time.monotonic() < deadline:
            try:
                out += os.read(fds[0], 1024)
            except OSError:
                break
        os.close(fds[0])
        assert b"/dev/pts/" in out and b"done" in out
    finally:
        server.close()


def test_interpreter_unreachable_during_exec(pyrun, bundle):
    """CVE-2019-5736 during exec: the exec stage that has joined the container's
    pid namespace is still the host's Python until it calls execve. We catch it
    waiting for the parent's acknowledgement (the parent `pyrun exec` stopped),
    after it dropped to the container's capabilities, so that only its
    non-dumpable flag keeps a container process (holding the same
    capabilities) away from /proc/<stage>/exe. Checked: with the
    PR_SET_DUMPABLE call in stages.bootstrap removed, the readlink succeeds."""
    bundle.config["process"].pop("rlimits")     # no earlier sync point: only the final ACK
    bundle.set_args("sleep", "300")
    running = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), running)
    init = pyrun.state(running)["pid"]
    init_pidns = os.readlink(f"/proc/{init}/ns/pid")
    init_caps = _cap_eff(init)
    try:
        for _attempt in range(30):
            parent = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "exec", "-d", running, "true"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stage = _find_stage(parent.pid, init_pidns)
            if stage is None:
                parent.wait(timeout=10)
                continue
            # The stage waits for the parent to reap stage 1 (then it arms its
            # parent-death signal): stop the parent only once it is its parent.
            deadline = time.monotonic() + 2
            while _ppid(stage) not in (parent.pid, None) and time.monotonic() < deadline:
                time.sleep(0.001)
            os.kill(parent.pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 2
                while _cap_eff(stage) != init_caps and time.monotonic() < deadline:
                    time.sleep(0.001)       # let it reach the wait for ACK, after the user switch
                if not runs_our_interpreter(stage):
                    continue    # too late: it already exec'd `true`
                if _cap_eff(stage) != init_caps:
                    continue    # stopped between reaping stage 1 and telling the stage so
                if not _blocked_in_recvmsg(stage):
                    continue    # the ACK was sent before the stop: it is on its way to execve
                assert _cap_eff(stage) == init_caps
                inner = next(line for line in Path(f"/proc/{stage}/status").read_text().splitlines()
                             if line.startswith("NSpid:")).split()[-1]
                out = pyrun("exec", running, "sh", "-c",
                            f"readlink /proc/{inner}/exe && echo LINK-READ; "
                            f"cat /proc/{inner}/exe > /dev/null && echo EXE-READ; echo done")
                assert out.stdout.split() == ["done"], out.stdout
                assert "Permission denied" in out.stderr
                return
            except (FileNotFoundError, StopIteration):
                continue
            finally:
                os.kill(parent.pid, signal.SIGCONT)
                parent.wait(timeout=10)
        pytest.fail("never caught an exec stage before its execve")
    finally:
        pyrun("delete", "-f", running)


def _blocked_in_recvmsg(pid: int) -> bool:
    """The stage sleeps in recvmsg(2) (x86-64 nr 47) on its channel: with the
    parent stopped, nothing can wake it, so it stays the host's Python."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        syscall = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    except (OSError, IndexError):
        return False
    return state == "S" and syscall == "47"


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _cap_eff(pid: int) -> str:
    return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("CapEff:")).split()[1]


def _find_stage(parent: int, pidns: str, timeout: float = 2.0) -> int | None:
    """A descendant of `parent` that lives in the container's pid namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in _descendants(parent):
            try:
                if os.readlink(f"/proc/{task}/ns/pid") == pidns:
                    return task
            except OSError:
                pass
        if not os.path.exists(f"/proc/{parent}"):
            return None
    return None


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out
