"""OCI hooks: programs the config asks for at fixed points of the lifecycle.

    prestart, createRuntime   create, runtime namespace, after the mounts, before pivot_root
    createContainer           create, container namespaces, before pivot_root (run by the init)
    startContainer            start, container namespaces, before the user process (run by the init)
    poststart                 start, runtime namespace, after the user process started
    poststop                  delete, runtime namespace, after the container is destroyed

Each gets the container's state on stdin. Output is captured, as runc does,
so nothing a hook prints lands in the container's log stream.
"""
from __future__ import annotations

import json
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun import SPEC_VERSION
from pyrun.errors import PyrunError


def hook_state(spec: dict[str, Any], container_id: str, status: str, pid: int | None,
               bundle: str) -> dict[str, Any]:
    state: dict[str, Any] = {"ociVersion": spec.get("ociVersion", SPEC_VERSION), "id": container_id,
                             "status": status}
    if pid:
        state["pid"] = pid
    state["bundle"] = bundle
    if spec.get("annotations"):
        state["annotations"] = spec["annotations"]
    return state


def hooks_of(spec: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return list((spec.get("hooks") or {}).get(kind) or [])


def run_hooks(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any]) -> None:
    """Run in order; the first failure raises with runc's wording."""
    if not hooks:
        return
    import subprocess
    payload = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        args = hook.get("args") or [hook["path"]]
        env = hook.get("env")
        env_map = None if env is None else dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        timeout = hook.get("timeout")
        try:
            proc = subprocess.run(args, executable=hook["path"], input=payload, env=env_map,
                                  capture_output=True, timeout=timeout, close_fds=True)
        except subprocess.TimeoutExpired:
            raise PyrunError(f"error running {kind} hook #{i}: hook ran past specified timeout of "
                             f"{float(timeout):.1f}s") from None
        except OSError as e:
            from pyrun.errors import strerror
            raise PyrunError(f"error running {kind} hook #{i}: fork/exec {hook['path']}: "
                             f"{strerror(e.errno)}") from None
        if proc.returncode != 0:
            status = (f"exit status {proc.returncode}" if proc.returncode > 0
                      else f"signal: {_signal_name(-proc.returncode)}")
            raise PyrunError(f"error running {kind} hook #{i}: {status}, stdout: "
                             f"{_one_line(proc.stdout)}, stderr: {_one_line(proc.stderr)}")


def _one_line(data: bytes) -> str:
    return " ".join(data.decode(errors="replace").split())[:400]


# How runc (Go's os.ProcessState) names the signal that killed a hook.
_GO_SIGNALS = ("", "hangup", "interrupt", "quit", "illegal instruction", "trace/breakpoint trap",
               "aborted", "bus error", "floating point exception", "killed", "user defined signal 1",
               "segmentation fault", "user defined signal 2", "broken pipe", "alarm clock", "terminated",
               "stack fault", "child exited", "continued", "stopped (signal)", "stopped",
               "stopped (tty input)", "stopped (tty output)", "urgent I/O condition",
               "CPU time limit exceeded", "file size limit exceeded", "virtual timer expired",
               "profiling timer expired", "window changed", "I/O possible", "power failure",
               "bad system call")


def _signal_name(sig: int) -> str:
    return _GO_SIGNALS[sig] if 0 < sig < len(_GO_SIGNALS) else f"signal {sig}"
