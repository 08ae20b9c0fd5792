"""Pseudo-terminals for the tests: reading a master, and running a command
(pyrun, a client such as docker or crictl) with a new pty as its stdio."""
from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time


def read_pty(master: int, until: bytes | None = None, timeout: float = 10.0,
             proc: subprocess.Popen | None = None) -> bytes:
    """Read a pty master until `until` shows up, it hangs up, `proc` has exited
    with nothing more to read, or `timeout` passes."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until is not None and until in data:
            break
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            if proc is not None and proc.poll() is not None:
                break
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


def _take_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_on_pty(cmd: list[str], script: bytes = b"", timeout: float = 30,
               size: tuple[int, int] | None = None, env: dict[str, str] | None = None,
               controlling: bool = False) -> tuple[int, str]:
    """Run `cmd` in a new session with a new pty (of `size` rows and columns)
    as its stdio, and with `controlling`, as its controlling terminal; type
    `script`; read until it exits. (Its exit status, or -1 if it did not exit
    in time; everything written to the terminal, \\r\\n as it came.)"""
    master, slave = pty.openpty()
    try:
        if size:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                preexec_fn=_take_controlling_tty if controlling else None)
    finally:
        os.close(slave)
    deadline = time.monotonic() + timeout
    try:
        if script:
            os.write(master, script)
        out = read_pty(master, timeout=timeout, proc=proc)
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = -1
            out += b"\n(the command did not exit in time)"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, out.decode(errors="replace")
