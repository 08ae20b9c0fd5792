"""process.terminal: the console socket protocol (one message, one SCM_RIGHTS
fd, as runc sends it) and `run` proxying the container's pty to our own."""
from __future__ import annotations

import os
import pty
import re
import socket
import subprocess

from conftest import PYRUN
from ptys import read_pty, run_on_pty


def listen(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    sock.settimeout(10)
    return sock


def test_console_socket_receives_the_master(pyrun, bundle, tmp_path):
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["consoleSize"] = {"height": 30, "width": 100}
    bundle.set_args("sh", "-c", "tty; stty size; echo done")
    sock_path = tmp_path / "console.sock"
    server = listen(sock_path)
    cid = pyrun.new_id()
    out, err = tmp_path / "out", tmp_path / "err"
    master = -1
    try:
        with out.open("w") as o, err.open("w") as e:
            create = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "create", "-b",
                                       str(bundle.path), "--console-socket", str(sock_path), cid],
                                      stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        try:
            conn, _ = server.accept()
        finally:
            assert create.wait(timeout=30) == 0, err.read_text()
        with conn:
            conn.settimeout(10)
            msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
            assert len(fds) == 1, fds
            master = fds[0]
            assert 0 < len(msg) < 4096
            assert conn.recv(4096) == b""        # exactly one message, then the sender is gone
        assert out.read_text() == "" and err.read_text() == ""
        assert os.isatty(master)
        assert pyrun.state(cid)["status"] == "created"

        pyrun("start", cid)
        text = read_pty(master, until=b"done").decode().replace("\r", "")
        lines = [line for line in text.splitlines() if line]
        assert re.fullmatch(r"/dev/(pts/\d+|console)", lines[0]), text
        assert lines[1] == "30 100"
        assert lines[2] == "done"
        assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    finally:
        if master >= 0:
            os.close(master)
        server.close()
        pyrun("delete", "--force", cid, check=False)


def test_terminal_without_console_socket_fails_create(pyrun, bundle):
    bundle.config["process"]["terminal"] = True
    bundle.set_args("sh")
    cid = pyrun.new_id()
    res = pyrun("create", "-b", str(bundle.path), cid, check=False)
    assert res.returncode != 0
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "console socket" in lines[0], res.stderr
    assert not (pyrun.root / cid).exists()
    assert pyrun("state", cid, check=False).returncode != 0


def test_console_socket_without_terminal_fails_create(pyrun, bundle, tmp_path):
    bundle.config["process"]["terminal"] = False
    bundle.set_args("sh")
    sock_path = tmp_path / "console.sock"
    server = listen(sock_path)
    try:
        cid = pyrun.new_id()
        res = pyrun("create", "-b", str(bundle.path), "--console-socket", str(sock_path), cid,
                    check=False)
        assert res.returncode != 0
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and "console socket" in lines[0], res.stderr
        assert not (pyrun.root / cid).exists()
        server.settimeout(0.2)
        try:
            conn, _ = server.accept()
        except socket.timeout:
            pass
        else:
            conn.close()
            raise AssertionError("pyrun connected to the console socket anyway")
    finally:
        server.close()


def test_run_in_the_foreground_proxies_our_terminal(pyrun, bundle):
    bundle.config["process"]["terminal"] = True
    bundle.set_args("sh", "-c", "tty; stty size; echo hi; exit 7")
    rc, text = run_on_pty([str(PYRUN), "--root", str(pyrun.root), "run", "-b", str(bundle.path), pyrun.new_id()],
                          size=(40, 120))
    text = text.replace("\r", "")
    lines = [line for line in text.splitlines() if line]
    assert rc == 7, text
    assert re.fullmatch(r"/dev/(pts/\d+|console)", lines[0]), text
    assert lines[1] == "40 120"         # the container's pty takes our size
    assert lines[2] == "hi"


# --- the pty belongs to the process's user (runc; tty.bats "tty owner ({u,g}id != 0)") ---

def _in_a_pty(cmd: list[str]) -> tuple[int, str]:
    """Run `cmd` with a fresh pty as its stdio: (exit status, what it printed)."""
    rc, text = run_on_pty(cmd)
    return rc, text.replace("\r", "")


OWNER = "stat -c %u:%g $(tty); echo done"


def test_console_pty_is_owned_by_the_process_user(pyrun, bundle, tmp_path):
    """Through the console socket (create/start). Before: 0:5."""
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.set_args("sh", "-c", OWNER)
    sock_path = tmp_path / "console.sock"
    server = listen(sock_path)
    cid = pyrun.new_id()
    master = -1
    try:
        create = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "create", "-b",
                                   str(bundle.path), "--console-socket", str(sock_path), cid],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conn, _ = server.accept()
        finally:
            assert create.wait(timeout=30) == 0
        with conn:
            conn.settimeout(10)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
            master = fds[0]
        pyrun("start", cid)
        lines = [line for line in read_pty(master, until=b"done").decode().replace("\r", "").splitlines() if line]
        assert lines == ["1000:5", "done"], lines
    finally:
        if master >= 0:
            os.close(master)
        server.close()
        pyrun("delete", "--force", cid, check=False)


def test_run_pty_is_owned_by_the_process_user(pyrun, bundle):
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.set_args("sh", "-c", OWNER)
    rc, text = _in_a_pty([str(PYRUN), "--root", str(pyrun.root), "run", "-b", str(bundle.path), pyrun.new_id()])
    assert rc == 0, text
    assert [line for line in text.splitlines() if line] == ["1000:5", "done"], text


def test_exec_pty_is_owned_by_the_exec_user(pyrun, bundle):
    """`exec -t --user 1000:1000`. Before: 0:5."""
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        rc, text = _in_a_pty([str(PYRUN), "--root", str(pyrun.root), "exec", "-t", "--user", "1000:1000",
                              cid, "sh", "-c", OWNER])
        assert rc == 0, text
        assert [line for line in text.splitlines() if line] == ["1000:5", "done"], text
    finally:
        pyrun("delete", "--force", cid)


# --- the bytes a foreground terminal gives (runc 1.2+ env.bats/run.bats compare `$output` lines) ---

def _tty_in_pipe_out(cmd: list[str]) -> tuple[int, bytes]:
    """Run `cmd` with a pty as stdin and stderr, a pipe as stdout (what `out=$(runc run -t ...)`
    in a terminal gives): (exit status, the stdout bytes)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, stdin=slave, stdout=subprocess.PIPE, stderr=slave,
                                start_new_session=True)
        os.close(slave)
        slave = -1
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_run_terminal_output_has_no_carriage_returns(pyrun, bundle):
    """runc clears ONLCR on the pty it proxies, so a pipe gets "a\\nb\\n". Before: "a\\r\\nb\\r\\n"
    (env.bats "non-empty HOME env is used" saw "/override\\r" as its first line)."""
    bundle.config["process"]["terminal"] = True
    bundle.set_args("sh", "-c", "echo a; echo b")
    rc, out = _tty_in_pipe_out([str(PYRUN), "--root", str(pyrun.root), "run", "-b", str(bundle.path),
                                pyrun.new_id()])
    assert (rc, out) == (0, b"a\nb\n")


def test_exec_terminal_output_has_no_carriage_returns(pyrun, bundle):
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        rc, out = _tty_in_pipe_out([str(PYRUN), "--root", str(pyrun.root), "exec", "-t", cid,
                                    "sh", "-c", "echo a; echo b"])
        assert (rc, out) == (0, b"a\nb\n")
    finally:
        pyrun("delete", "--force", cid)


def test_run_terminal_on_our_terminal_still_ends_lines_with_crlf(pyrun, bundle):
    """Our terminal in raw mode keeps output processing (as runc's), so with the container's
    ONLCR off a terminal still gets "\\r\\n", not a staircase of bare "\\n"."""
    bundle.config["process"]["terminal"] = True
    bundle.set_args("sh", "-c", "echo a; echo b")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "run", "-b", str(bundle.path),
                                 pyrun.new_id()], stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True)
        os.close(slave)
        slave = -1
        data = read_pty(master, timeout=30, proc=proc)
        data += read_pty(master, timeout=1)
        assert proc.wait(timeout=10) == 0
        assert data == b"a\r\nb\r\n"
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
