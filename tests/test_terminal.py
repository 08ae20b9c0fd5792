"""process.terminal: the console socket protocol (one message, one SCM_RIGHTS
fd, as runc sends it) and `run` proxying the container's pty to our own."""
from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import select
import socket
import struct
import subprocess
import termios
import time

from conftest import PYRUN


def read_pty(master: int, until: bytes | None = None, timeout: float = 10.0) -> bytes:
    """Read a pty master until `until` shows up, it hangs up, or `timeout` passes."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until is not None and until in data:
            break
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError as e:
            if e.errno == errno.EIO:      # every slave closed
                break
            raise
        if not chunk:
            break
        data += chunk
    return data


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
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "run", "-b", str(bundle.path),
                                 pyrun.new_id()], stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True)
        os.close(slave)
        slave = -1
        data = b""
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            data += read_pty(master, timeout=0.2)
        data += read_pty(master, timeout=1)
        rc = proc.wait(timeout=10)
        text = data.decode(errors="replace").replace("\r", "")
        lines = [line for line in text.splitlines() if line]
        assert rc == 7, text
        assert re.fullmatch(r"/dev/(pts/\d+|console)", lines[0]), text
        assert lines[1] == "40 120"         # the container's pty takes our size
        assert lines[2] == "hi"
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


# --- the pty belongs to the process's user (runc; tty.bats "tty owner ({u,g}id != 0)") ---

def _in_a_pty(cmd: list[str]) -> tuple[int, str]:
    """Run `cmd` with a fresh pty as its stdio: (exit status, what it printed)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        slave = -1
        data = b""
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            data += read_pty(master, timeout=0.2)
        data += read_pty(master, timeout=1)
        return proc.wait(timeout=10), data.decode(errors="replace").replace("\r", "")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


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
