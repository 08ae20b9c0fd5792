"""pyrun resume <container-id>"""
from __future__ import annotations


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args, parse
    from pyrun.container.pause import resume
    _opts, args = parse([], argv)
    check_args("resume", args, exactly=1)
    resume(glob.root, args[0])
    return 0
