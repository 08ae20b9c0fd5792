"""runc-compatible logging: logrus text or JSON objects, to --log or stderr.

containerd keeps the last `level=error` object of the log file; podman parses
the file as a single JSON object.  So a failure writes exactly one error entry,
and nothing else is written unless --debug is given.

As runc does, --log FILE is opened (created) when the command starts, even if
nothing is ever logged, and entries go to that one descriptor (CLOEXEC).  Only
the pyrun command itself logs: a forked stage has closed the descriptor (its
number may since name another file) and, once in the container's mount
namespace, the path could resolve inside the container's rootfs; its entries
are dropped.
"""
from __future__ import annotations

import os
import sys
import time

_path: str | None = None
_json = False
_debug = False
_fd = -1            # the --log file, opened by configure
_owner: int | None = None      # the pid that configured logging: the pyrun command


def configure(path: str | None, fmt: str, debug: bool) -> None:
    """Raises PyrunError (runc's wording) when the --log file cannot be opened."""
    global _path, _json, _debug, _fd, _owner
    _path = path or None
    _json = fmt == "json"
    _debug = debug
    _owner = os.getpid()
    if _fd >= 0:
        os.close(_fd)
        _fd = -1
    if _path is not None and _path != "/dev/stderr":
        try:
            _fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_SYNC | os.O_CLOEXEC, 0o644)
        except OSError as e:
            from pyrun.errors import PyrunError, strerror
            _path = None            # the error itself goes to stderr, as runc's does
            raise PyrunError(f"open {path}: {strerror(e.errno)}") from None


def debugging() -> bool:
    """--debug was given: worth building an expensive debug message."""
    return _debug


def _timestamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"


def _format(level: str, msg: str, step: str | None = None) -> str:
    if _json:
        from pyrun.state.jsonio import dumps     # not json: re and enum for one line
        entry = {"level": level, "msg": msg, "step": step, "time": _timestamp()}   # logrus: keys sorted
        if step is None:
            del entry["step"]
        return dumps(entry, compact=True) + "\n"
    quoted = msg.replace("\\", "\\\\").replace('"', '\\"')
    return f'time="{_timestamp()}" level={level} msg="{quoted}"\n'


def _write(level: str, msg: str, step: str | None = None) -> None:
    if _forked():
        return
    line = _format(level, msg, step).encode()
    try:
        os.write(_fd if _fd >= 0 else 2, line)
    except OSError:
        pass


def _forked() -> bool:
    """In a forked stage, not the pyrun command: see the module's docstring."""
    return _owner is not None and os.getpid() != _owner


def error(msg: str, step: str | None = None) -> None:
    """One error entry; with a log file the plain message also goes to stderr.
    `step`, the init's failing step, is a field of its own in a JSON entry
    (the text entry keeps runc's shape: the message already names it)."""
    if _forked():
        return
    msg = " ".join(msg.splitlines())
    _write("error", msg, step)
    if _path is not None and _path != "/dev/stderr":
        try:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()
        except OSError:
            pass


def warning(msg: str) -> None:
    _write("warning", msg)


def debug(msg: str) -> None:
    if _debug:
        _write("debug", msg)
