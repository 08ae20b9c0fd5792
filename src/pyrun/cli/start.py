"""pyrun start <container-id>"""
from __future__ import annotations


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.main import require_args
    from pyrun.cli.parser import parse
    from pyrun.container.start import start
    _opts, args = parse([], argv)
    require_args(args, 1, "start")
    start(glob.root, args[0])
    return 0
