"""`run`: create + start, then (unless detached) wait, forwarding signals and
the terminal, and exit with the container's status."""
from __future__ import annotations

import os
import signal
import socket
from typing import Any

from pyrun.container.create import CreateRequest, create
from pyrun.container.delete import delete
from pyrun.container.start import start

# Signals the container should get instead of us (runc forwards all but these).
_NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGWINCH, signal.SIGURG}


def run(req: CreateRequest, keep: bool = False) -> int:
    if req.detach:
        create(req)
        start(req.root, req.id)
        return 0
    sink_parent = None
    if _wants_terminal(req) and not req.console_socket:
        sink_parent, req.console_sink = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        created = create(req)
    finally:
        if req.console_sink is not None:
            req.console_sink.close()
    pid = created.pid
    _forward_signals(pid)
    try:
        start(req.root, req.id)
        if sink_parent is not None:
            from pyrun.process.terminal import receive_master
            master = receive_master(sink_parent)
            sink_parent.close()
            status = _proxy_terminal(master, pid)
        else:
            status = _wait(pid)
    finally:
        if not keep:
            delete(req.root, req.id, force=True)
    return status


def _wants_terminal(req: CreateRequest) -> bool:
    import json
    try:
        with open(os.path.join(req.bundle or ".", "config.json")) as f:
            return bool((json.load(f).get("process") or {}).get("terminal"))
    except (OSError, ValueError, AttributeError):
        return False


def _forward_signals(pid: int) -> None:
    def forward(sig: int, _frame: Any) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    for sig in range(1, signal.NSIG):
        if sig in _NOT_FORWARDED:
            continue
        try:
            signal.signal(sig, forward)
        except (OSError, ValueError):
            pass


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _wait(pid: int) -> int:
    """Reap until the init exits; we are a subreaper, so orphans come to us too."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            return _exit_code(status)


def _proxy_terminal(master: int, pid: int) -> int:
    """Copy between our tty and the container's pty until the pty hangs up."""
    import select
    import termios
    import tty

    from pyrun.process.terminal import get_size, set_size
    stdin = 0
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
        try:
            set_size(master, *get_size(stdin))
        except OSError:
            pass
        signal.signal(signal.SIGWINCH, lambda *_: set_size(master, *get_size(stdin)))
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    status: int | None = None
    readers = [master, stdin, wake_r]
    try:
        while True:
            if status is None:
                try:
                    got, st = os.waitpid(pid, os.WNOHANG)
                    if got == pid:
                        status = _exit_code(st)
                except ChildProcessError:
                    status = 255
            try:
                ready, _, _ = select.select(readers, [], [], 0.1 if status is not None else None)
            except InterruptedError:
                continue
            if not ready and status is not None:
                break
            if wake_r in ready:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    if status is not None:
                        break
                    readers.remove(master)
                else:
                    os.write(1, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    readers.remove(stdin)
    finally:
        signal.set_wakeup_fd(-1)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
    if status is None:
        status = _wait(pid)
    return status
