"""pyrun pause <container-id>"""
from __future__ import annotations


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import parse
    from pyrun.container.pause import pause
    _opts, args = parse([], argv)
    require_exact_args(args, 1, "pause")
    pause(glob.root, args[0])
    return 0


def require_exact_args(args: list[str], count: int, usage: str) -> None:
    """runc's checkArgs(exactArgs) wording (pause, resume, ps and events use it)."""
    if len(args) != count:
        from pyrun.errors import UsageError
        raise UsageError(f'"{usage}" requires exactly {count} argument(s)')
