"""pyrun delete [--force] <container-id>"""
from __future__ import annotations

from pyrun.cli.parser import Flag, parse

FLAGS = [Flag(("force", "f"))]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    from pyrun.container.delete import delete
    opts, args = parse(FLAGS, argv)
    check_args("delete", args, exactly=1)
    delete(glob.root, args[0], force=opts["force"])
    return 0
