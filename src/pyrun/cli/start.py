"""pyrun start <container-id>"""
from __future__ import annotations


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args, parse
    from pyrun.container.start import start
    _opts, args = parse([], argv)
    check_args("start", args, exactly=1)
    start(glob.root, args[0])
    return 0
