"""runc-compatible logging: logrus text or JSON objects, to --log or stderr.

containerd keeps the last `level=error` object of the log file; podman parses
the file as a single JSON object.  So a failure writes exactly one error entry,
and nothing else is written unless --debug is given.
"""
from __future__ import annotations

import os
import sys
import time

_path: str | None = None
_json = False
_debug = False


def configure(path: str | None, fmt: str, debug: bool) -> None:
    global _path, _json, _debug
    _path = path or None
    _json = fmt == "json"
    _debug = debug


def _timestamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"


def _format(level: str, msg: str) -> str:
    if _json:
        import json
        return json.dumps({"level": level, "msg": msg, "time": _timestamp()}) + "\n"
    quoted = msg.replace("\\", "\\\\").replace('"', '\\"')
    return f'time="{_timestamp()}" level={level} msg="{quoted}"\n'


def _write(level: str, msg: str) -> None:
    line = _format(level, msg).encode()
    if _path is None or _path == "/dev/stderr":
        try:
            os.write(2, line)
        except OSError:
            pass
        return
    fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_SYNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def error(msg: str) -> None:
    """One error entry; with a log file the plain message also goes to stderr."""
    msg = " ".join(msg.splitlines())
    _write("error", msg)
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
