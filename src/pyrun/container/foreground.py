"""Waiting in the foreground for a container process: `run` and `exec` without -d.

We forward signals to the process, proxy our terminal to its pty when it has
one, reap whatever is re-parented to us (we are a subreaper) and return the
process's exit status, 128+N when a signal ended it.
"""
from __future__ import annotations

import os
import _signal as signal    # not signal: its enums cost ~1.5 ms
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

# Signals the container should get instead of us (runc forwards all but these).
_NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGWINCH, signal.SIGURG}


def forward_signals(pid: int) -> None:
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


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def wait(pid: int) -> int:
    """Reap until the init exits; we are a subreaper, so orphans come to us too."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            return exit_code(status)


def copy_size(master: int) -> None:
    """Give the container's pty our terminal's size (when stdin is one)."""
    if os.isatty(0):
        from pyrun.process.terminal import get_size, set_size
        try:
            set_size(master, *get_size(0))
        except OSError:
            pass


def proxy_terminal(master: int, pid: int) -> int:
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
        # Output processing stays on (as runc's raw mode): the container's pty
        # no longer turns "\n" into "\r\n" (receive_master), our terminal does.
        raw = termios.tcgetattr(stdin)
        raw[1] |= termios.OPOST
        termios.tcsetattr(stdin, termios.TCSANOW, raw)
        copy_size(master)
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
                        status = exit_code(st)
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
        status = wait(pid)
    return status
