"""pyrun kill [--all] <container-id> [signal]"""
from __future__ import annotations

from pyrun.cli.parser import Flag, parse

FLAGS = [Flag(("all", "a"))]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    from pyrun.container.kill import kill, parse_signal
    opts, args = parse(FLAGS, argv)
    check_args("kill", args, minimum=1, maximum=2)
    sig = parse_signal(args[1] if len(args) > 1 else "SIGTERM")
    kill(glob.root, args[0], sig, all_processes=opts["all"])
    return 0
