"""pyrun pause <container-id>"""
from __future__ import annotations


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args, parse
    from pyrun.container.pause import pause
    _opts, args = parse([], argv)
    check_args("pause", args, exactly=1)
    pause(glob.root, args[0])
    return 0

