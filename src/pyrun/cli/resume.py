"""pyrun resume <container-id>"""
from __future__ import annotations


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.pause import require_exact_args
    from pyrun.cli.parser import parse
    from pyrun.container.pause import resume
    _opts, args = parse([], argv)
    require_exact_args(args, 1, "resume")
    resume(glob.root, args[0])
    return 0
