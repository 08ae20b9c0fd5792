"""Errors with runc's exact wording: callers (containerd, Docker, podman) match on it."""
from __future__ import annotations

# libcontainer/error.go wording; containerd's checkKillError and podman match these.
ID_IN_USE = "container with given ID already exists"
INVALID_ID = "invalid container ID format"
NOT_EXIST = "container does not exist"
PAUSED = "container paused"
RUNNING = "container still running"
NOT_RUNNING = "container not running"
NOT_PAUSED = "container not paused"


def strerror(errno: int | None) -> str:
    """errno text as Go (and so runc) words it: "no such file or directory"."""
    import os
    text = os.strerror(errno) if errno else "unknown error"
    return text[:1].lower() + text[1:]


def oserror_text(e: OSError) -> str:
    """An OSError as one Go-style line, with the path when it is not already there."""
    import os
    text = e.strerror or str(e)
    if e.errno and text == os.strerror(e.errno):
        text = strerror(e.errno)
    if e.filename and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    return text


class PyrunError(Exception):
    """An error reported to the caller as one line and a non-zero exit."""

    step: str | None = None     # the init's failing step, for the JSON log's "step" field

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def reworded(self, message: str, exit_code: int | None = None) -> PyrunError:
        """The same failure in the caller's words; the step stays with it."""
        e = PyrunError(message, self.exit_code if exit_code is None else exit_code)
        e.step = self.step
        return e


class ConfigError(PyrunError):
    """The bundle's config.json is unreadable, invalid or inconsistent."""


class UsageError(PyrunError):
    """The command line is wrong."""


class FlagError(UsageError):
    """An unknown flag or a bad flag value: runc prints "Incorrect Usage" and the help."""


class ArgsError(UsageError):
    """The wrong number of arguments: runc prints "Incorrect Usage." and the help."""


START_FAILED = "unable to start container process"   # runc: what went wrong between fork and ready


def init_failed_text(step: str | None, text: str) -> str:
    """An init failure as runc words it, pyrun's step name after runc's text:
    callers glob runc's words straight after "error during container init: "."""
    return f"error during container init: {text} (step: {step})" if step else f"error during container init: {text}"


def init_failed(step: str | None, text: str) -> PyrunError:
    e = PyrunError(init_failed_text(step, text))
    e.step = step or None
    return e


class InitError(PyrunError):
    """A named step of container set-up failed."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
