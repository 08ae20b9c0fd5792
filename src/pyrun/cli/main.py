"""`pyrun [global flags] <command> [flags] [args]`: global flags, then dispatch.

Command modules are imported only when their command runs, so `pyrun state`
never pays for what `pyrun create` needs.
"""
from __future__ import annotations

import os
import sys

from pyrun import SPEC_VERSION, __version__, log
from pyrun.cli.parser import Flag, parse
from pyrun.errors import PyrunError, UsageError

GLOBAL_FLAGS = [
    Flag(("root",), "str"),
    Flag(("log",), "str"),
    Flag(("log-format",), "str", "text"),
    Flag(("debug",)),
    Flag(("systemd-cgroup",)),
    Flag(("rootless",), "str", "auto"),
    Flag(("criu",), "str"),             # hidden in runc; accepted and ignored
    Flag(("version", "v")),
    Flag(("help", "h")),
]

COMMANDS = {
    "create": "create", "start": "start", "run": "run", "state": "state", "kill": "kill",
    "delete": "delete", "list": "list_", "spec": "spec", "exec": "exec_", "features": "features",
    "update": "update", "pause": "pause", "resume": "resume", "ps": "ps", "events": "events",
}

USAGE = """usage: pyrun [global options] command [command options] [arguments...]

commands: create, start, run, exec, state, kill, delete, list, spec, features,
          update, pause, resume, ps, events
global options: --root, --log, --log-format text|json, --debug, --systemd-cgroup, --rootless, --version
"""


class GlobalOptions:
    """The global flags every command sees (a plain class: no dataclasses import)."""

    __slots__ = ("root", "systemd_cgroup", "rootless")

    def __init__(self, root: str, systemd_cgroup: bool, rootless: str) -> None:
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.rootless = rootless


def _ensure_stdio() -> None:
    """A closed fd 0-2 would be filled by the next open() and handed to the
    container as its stdio: park /dev/null there instead."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open("/dev/null", os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _ensure_stdio()
    action = argv[0] if argv and not argv[0].startswith("-") else ""
    try:
        opts, rest = parse(GLOBAL_FLAGS, argv)
        log.configure(opts["log"], opts["log_format"], opts["debug"])
        if opts["log_format"] not in ("text", "json"):
            raise UsageError(f"invalid log-format: {opts['log_format']}")
        if opts["version"]:
            sys.stdout.write(f"pyrun version {__version__}\ncommit: {_commit()}\nspec: {SPEC_VERSION}\n")
            return 0
        if opts["help"] or not rest:
            sys.stdout.write(USAGE)
            return 0 if opts["help"] else 1
        action = rest[0]
        module_name = COMMANDS.get(action)
        if module_name is None:
            raise UsageError(f"No help topic for '{action}'")
        if action in ("create", "run", "exec"):
            _readonly_exe(rest)
        from pyrun.state.store import default_root
        glob = GlobalOptions(root=os.path.abspath(opts["root"] or default_root()),
                             systemd_cgroup=opts["systemd_cgroup"], rootless=opts["rootless"])
        name = f"pyrun.cli.{module_name}"
        __import__(name)            # not importlib.import_module: importlib brings warnings
        module = sys.modules[name]
        return module.main(glob, rest[1:])
    except PyrunError as e:
        prefix = f"pyrun {action} failed: " if action in ("create", "run", "exec") else ""
        log.error(prefix + str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def _readonly_exe(rest: list[str]) -> None:
    """The launcher already re-executed us read-only (pyrun.selfexe); this
    covers `python -m pyrun` and pip's console script, or reports the failure."""
    from pyrun import selfexe
    try:
        selfexe.ensure(rest)
    except selfexe.ExeError as e:
        raise PyrunError(str(e)) from None


def exit_now(code: int) -> None:
    """Flush stdio and leave without interpreter finalization (module teardown,
    GC, restoring ~64 signal handlers): ~4 ms of every command, for nothing a
    runtime needs; files are written through os.write or closed by `with`."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code)


def _commit() -> str:
    from pyrun import __version__ as v
    return os.environ.get("PYRUN_COMMIT", f"v{v}")


def require_args(args: list[str], count: int, usage: str) -> None:
    """runc's wording when a command gets the wrong number of arguments."""
    if len(args) < count:
        raise UsageError(f'"{usage}" requires a minimum of {count} argument{"s" if count > 1 else ""}')
