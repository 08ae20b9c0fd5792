"""An argv parser with urfave/cli (v1, Go `flag`) semantics, as runc's callers expect.

- `--flag v`, `--flag=v`, `-flag v` and `-flag=v` are the same thing;
- boolean flags take no value, or an explicit `=true|false`;
- flag parsing stops at the first positional argument or at `--`.
"""
from __future__ import annotations

TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import UsageError


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
            raise UsageError(f"flag provided but not defined: -{name}")
        if flag.kind == "bool":
            if not eq:
                opts[flag.key] = True
            elif value in _TRUE:
                opts[flag.key] = True
            elif value in _FALSE:
                opts[flag.key] = False
            else:
                raise UsageError(f'invalid boolean value "{value}" for -{name}')
            continue
        if not eq:
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        if flag.kind == "int":
            try:
                opts[flag.key] = int(value, 0)
            except ValueError:
                raise UsageError(f'invalid value "{value}" for flag -{name}') from None
        elif flag.kind == "list":
            opts[flag.key].append(value)
        else:
            opts[flag.key] = value
    return opts, positional
