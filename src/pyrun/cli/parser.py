"""An argv parser with urfave/cli (v1, Go `flag`) semantics, as runc's callers expect.

- `--flag v`, `--flag=v`, `-flag v` and `-flag=v` are the same thing;
- boolean flags take no value, or an explicit `=true|false`;
- flag parsing stops at the first positional argument or at `--`;
- a command's flags may follow its arguments (`update ID --memory 1g`): urfave
  moves them to the front first (reorder_args), for every command but exec and ps;
- `-h`/`--help` anywhere among the flags asks for the command's help.
"""
from __future__ import annotations

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ArgsError, FlagError, UsageError   # noqa: F401 (UsageError: parse's callers)


class HelpRequested(Exception):
    """-h or --help among the flags."""


class Flag:
    """One flag: its names (the first is canonical, e.g. ("bundle", "b")), its
    kind (bool | str | int | list) and default. A plain class: every command
    builds flags, and `dataclasses` would cost each invocation ~7 ms of imports."""

    __slots__ = ("names", "kind", "default", "key")

    def __init__(self, names: tuple[str, ...], kind: str = "bool", default: Any = None) -> None:
        self.names = names
        self.kind = kind
        self.default = default
        self.key = names[0].replace("-", "_")


_TRUE = {"1", "t", "true", "TRUE", "True", "T"}
_FALSE = {"0", "f", "false", "FALSE", "False", "F"}


def parse(flags: list[Flag], argv: list[str], stop_at_positional: bool = True
          ) -> tuple[dict[str, Any], list[str]]:
    """Return (options by key, positional arguments)."""
    by_name = {name: flag for flag in flags for name in flag.names}
    opts: dict[str, Any] = {f.key: (list(f.default) if f.kind == "list" and f.default
                                    else ([] if f.kind == "list" else f.default))
                            for f in flags}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            if stop_at_positional:
                positional.extend(argv[i:])
                break
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        flag = by_name.get(name)
        if flag is None:
            if name in ("h", "help"):
                raise HelpRequested
            raise FlagError(f"flag provided but not defined: -{name}")
        if flag.kind == "bool":
            if not eq:
                opts[flag.key] = True
            elif value in _TRUE:
                opts[flag.key] = True
            elif value in _FALSE:
                opts[flag.key] = False
            else:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
            continue
        if not eq:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        if flag.kind == "int":
            try:
                opts[flag.key] = int(value, 0)
            except ValueError:
                raise FlagError(f'invalid value "{value}" for flag -{name}: parse error') from None
        elif flag.kind == "list":
            opts[flag.key].append(value)
        else:
            opts[flag.key] = value
    return opts, positional


def reorder_args(argv: list[str]) -> list[str]:
    """urfave/cli v1's reorderArgs: flags (and the word after a flag without
    `=`, taken as its value even when the flag is boolean) go to the front,
    positional arguments after them; `--` and what follows stay last."""
    flags: list[str] = []
    positional: list[str] = []
    wants_value = False
    for i, arg in enumerate(argv):
        if arg == "--":
            positional.extend(argv[i:])
            break
        if wants_value and not arg.startswith("-"):
            wants_value = False
            flags.append(arg)
            continue
        wants_value = False
        if arg != "-" and arg.startswith("-"):
            flags.append(arg)
            wants_value = "=" not in arg
        else:
            positional.append(arg)
    return flags + positional


def check_args(command: str, args: list[str], exactly: int | None = None,
               minimum: int | None = None, maximum: int | None = None) -> None:
    """runc's checkArgs, with its wording (exactArgs, minArgs, maxArgs)."""
    if exactly is not None and len(args) != exactly:
        raise ArgsError(f'pyrun: "{command}" requires exactly {exactly} argument(s)')
    if minimum is not None and len(args) < minimum:
        raise ArgsError(f'pyrun: "{command}" requires a minimum of {minimum} argument(s)')
    if maximum is not None and len(args) > maximum:
        raise ArgsError(f'pyrun: "{command}" requires a maximum of {maximum} argument(s)')
