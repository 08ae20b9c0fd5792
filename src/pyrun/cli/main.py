"""`pyrun [global flags] <command> [flags] [args]`: global flags, then dispatch.

Command modules are imported only when their command runs, so `pyrun state`
never pays for what `pyrun create` needs.
"""
from __future__ import annotations

import os
import sys

from pyrun import log, program
from pyrun.cli.parser import ArgsError, Flag, FlagError, HelpRequested, parse, reorder_args
from pyrun.errors import PyrunError, UsageError

GLOBAL_FLAGS = [      # in runc's order: `pyrun --help` lists them so
    Flag(("debug",)),
    Flag(("log",), "str"),
    Flag(("log-format",), "str", "text"),
    Flag(("root",), "str"),
    Flag(("criu",), "str"),             # hidden in runc; accepted and ignored
    Flag(("systemd-cgroup",)),
    Flag(("rootless",), "str", "auto"),
    Flag(("help", "h")),
    Flag(("version", "v")),
]

COMMANDS = {
    "create": "create", "start": "start", "run": "run", "state": "state", "kill": "kill",
    "delete": "delete", "list": "list_", "spec": "spec", "exec": "exec_", "features": "features",
    "update": "update", "pause": "pause", "resume": "resume", "ps": "ps", "events": "events",
    "checkpoint": "checkpoint", "restore": "restore",
    "explain": "explain", "audit": "audit",
}

SEAL_DEBUG = {"overlayfs": "runc exeseal: using overlayfs for sealed /proc/self/exe",
              "clone": "runc exeseal: using a read-only mount for sealed /proc/self/exe",
              "memfd": "runc exeseal: using a sealed memfd copy of /proc/self/exe"}
EXEC_FAILED = 255      # runc: every exec failure, usage errors aside
NO_HELP_TOPIC = 3      # urfave/cli's exit code for an unknown command


class GlobalOptions:
    """The global flags every command sees (a plain class: no dataclasses import)."""

    __slots__ = ("root", "root_given", "systemd_cgroup", "rootless")

    def __init__(self, root: str, systemd_cgroup: bool, rootless: str, root_given: bool = False) -> None:
        self.root = root
        self.root_given = root_given        # --root was given: `list` must find it (runc 1.5)
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
        try:
            opts, rest = parse(GLOBAL_FLAGS, argv)
        except FlagError as e:
            log.configure(None, "text", False)
            return _incorrect_usage(f"Incorrect Usage. {e}\n\n", None, e)
        try:
            log.configure(opts["log"], opts["log_format"], opts["debug"])
        except PyrunError as e:     # runc: the log file is opened before any command runs
            log.error(str(e))
            return 1
        if opts["log_format"] not in ("text", "json"):
            raise UsageError(f"invalid log-format: {opts['log_format']}")
        if opts["version"]:
            from pyrun.cli.version import version_text
            sys.stdout.write(f"{program()} version {version_text()}\n")
            return 0
        action = rest[0] if rest else ""
        if opts["help"] or action in ("", "help", "h"):
            return _help(rest[1:] if action else [])
        module_name = COMMANDS.get(action)
        if module_name is None:
            raise UsageError(f"No help topic for '{action}'", NO_HELP_TOPIC)
        if action in ("create", "run", "exec"):
            _readonly_exe(rest)
        from pyrun.state.store import default_root
        glob = GlobalOptions(root=os.path.abspath(opts["root"] or default_root()),
                             systemd_cgroup=opts["systemd_cgroup"], rootless=opts["rootless"],
                             root_given=bool(opts["root"]))
        name = f"pyrun.cli.{module_name}"
        __import__(name)            # not importlib.import_module: importlib brings warnings
        module = sys.modules[name]
        args = rest[1:] if action in ("exec", "ps") else reorder_args(rest[1:])
        return module.main(glob, args)
    except HelpRequested:
        from pyrun.cli.help import command_help
        sys.stdout.write(command_help(action))
        return 0
    except FlagError as e:
        return _incorrect_usage(f"Incorrect Usage: {e}\n\n", action, e)
    except ArgsError as e:
        return _incorrect_usage("Incorrect Usage.\n\n", action, e)
    except PyrunError as e:
        if isinstance(e, UsageError):
            log.error(str(e))
            return e.exit_code
        if action == "exec":        # runc: fatalWithCode(fmt.Errorf("exec failed: %w", err), 255)
            log.error(f"exec failed: {e}", e.step)
            return EXEC_FAILED
        if action in ("create", "run"):
            prefix = f"{program()} {action} failed: "
        else:
            prefix = ""
        log.error(prefix + str(e), e.step)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def _help(topics: list[str]) -> int:
    """`pyrun`, `pyrun --help`, `pyrun help [command]`: help on stdout, exit 0."""
    from pyrun.cli import help as text
    if not topics:
        from pyrun.cli.version import version_text
        sys.stdout.write(text.app_help(GLOBAL_FLAGS, version_text()))
    elif topics[0] in COMMANDS:
        sys.stdout.write(text.command_help(topics[0]))
    elif topics[0] in ("help", "h"):
        sys.stdout.write(text.help_command_help())
    else:
        log.error(f"No help topic for '{topics[0]}'")
        return NO_HELP_TOPIC
    return 0


def _incorrect_usage(head: str, command: str | None, error: PyrunError) -> int:
    """What urfave/cli does with a bad command line: "Incorrect Usage" and the
    help on stdout, the error itself logged, exit 1."""
    from pyrun.cli import help as text
    if command is None:
        from pyrun.cli.version import version_text
        body = text.app_help(GLOBAL_FLAGS, version_text())
    else:
        body = text.command_help(command)
    sys.stdout.write(head + body)
    sys.stdout.flush()
    log.error(str(error))
    return 1


def _readonly_exe(rest: list[str]) -> None:
    """The launcher already re-executed us read-only (pyrun.selfexe); this
    covers `python -m pyrun` and pip's console script, or reports the failure."""
    from pyrun import selfexe
    try:
        selfexe.ensure(rest)
    except selfexe.ExeError as e:
        raise PyrunError(str(e)) from None
    if log.debugging():      # runc's lines (its tests look for them), for the method actually in place
        how = selfexe.method()
        if how:
            log.debug(SEAL_DEBUG[how])
            log.debug("runc exeseal: using /proc/self/exe clone")


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


def require_args(args: list[str], count: int, usage: str) -> None:
    """runc's minArgs check (exec): at least `count` arguments."""
    from pyrun.cli.parser import check_args
    check_args(usage, args, minimum=count)
