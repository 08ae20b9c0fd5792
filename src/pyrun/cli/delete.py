"""pyrun delete [--force] <container-id>"""
from __future__ import annotations

from pyrun.cli.parser import Flag, parse

FLAGS = [Flag(("force", "f"))]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.main import require_args
    from pyrun.container.delete import delete
    opts, args = parse(FLAGS, argv)
    require_args(args, 1, "delete")
    delete(glob.root, args[0], force=opts["force"])
    return 0
