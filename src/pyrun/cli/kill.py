"""pyrun kill [--all] <container-id> [signal]"""
from __future__ import annotations

from pyrun.cli.parser import Flag, parse

FLAGS = [Flag(("all", "a"))]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    from pyrun.container.kill import kill
    opts, args = parse(FLAGS, argv)
    check_args("kill", args, minimum=1, maximum=2)
    kill(glob.root, args[0], args[1] if len(args) > 1 else "SIGTERM", all_processes=opts["all"])
    return 0
