"""--pidfd-socket (runc 1.2+, pidfd-socket.bats): a pidfd of the container's init (create,
run) or of the exec'd process arrives on the socket before the process runs; whoever holds
it can signal exactly that process. Before: the flag was parsed and ignored."""
from __future__ import annotations

import os
import signal
import socket
import threading

import pytest


class Receiver:
    """Listens on `path` and keeps what the first connection sends: (message, fds)."""

    def __init__(self, path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.got: tuple[bytes, list[int]] | None = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
            self.got = (msg, fds)

    def result(self) -> tuple[bytes, list[int]]:
        self.thread.join(30)
        self.sock.close()
        assert self.got is not None, "nothing arrived on the pidfd socket"
        return self.got


def _pid_of_pidfd(fd: int) -> int:
    fields = dict(line.split(":", 1) for line in open(f"/proc/self/fdinfo/{fd}").read().splitlines())
    return int(fields["Pid"])


@pytest.mark.parametrize("command", [["create"], ["run", "-d"]])
def test_init_pidfd_is_sent_and_signals_the_init(pyrun, bundle, tmp_path, command):
    bundle.set_args("sleep", "300")
    receiver = Receiver(tmp_path / "pidfd.sock")
    cid = pyrun.new_id()
    pyrun(*command, "--pidfd-socket", str(tmp_path / "pidfd.sock"), "-b", str(bundle.path), cid)
    try:
        msg, fds = receiver.result()
        assert (msg, len(fds)) == (b"standard", 1)
        assert _pid_of_pidfd(fds[0]) == pyrun.state(cid)["pid"]
        signal.pidfd_send_signal(fds[0], signal.SIGKILL)
        os.close(fds[0])
        assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    finally:
        pyrun("delete", "-f", cid)


def test_exec_pidfd_is_the_exec_process(pyrun, bundle, tmp_path):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        receiver = Receiver(tmp_path / "pidfd.sock")
        pyrun("exec", "-d", "--pid-file", str(tmp_path / "exec.pid"), "--pidfd-socket",
              str(tmp_path / "pidfd.sock"), cid, "sleep", "301")
        msg, fds = receiver.result()
        assert (msg, len(fds)) == (b"setns", 1)
        assert _pid_of_pidfd(fds[0]) == int((tmp_path / "exec.pid").read_text())
        os.close(fds[0])
    finally:
        pyrun("delete", "-f", cid)


def test_pidfd_socket_nobody_listens_on_fails_create_cleanly(pyrun, bundle, tmp_path):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    path = tmp_path / "nobody.sock"
    res = pyrun("create", "--pidfd-socket", str(path), "-b", str(bundle.path), cid, check=False)
    assert res.returncode == 1
    assert f"failed to dail {path}: dial unix {path}: connect: no such file or directory" in res.stderr
    assert not (pyrun.root / cid).exists()
