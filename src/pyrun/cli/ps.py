"""pyrun ps [--format table|json] <container-id> [ps options]"""
from __future__ import annotations

import json
import sys

from pyrun.cli.parser import Flag, parse
from pyrun.errors import PyrunError

FLAGS = [Flag(("format", "f"), "str", "table")]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    from pyrun.container.ps import pids, table
    opts, args = parse(FLAGS, argv)
    check_args("ps", args, minimum=1)
    if opts["format"] == "json":
        sys.stdout.write(json.dumps(pids(glob.root, args[0]), separators=(",", ":")) + "\n")
    elif opts["format"] == "table":
        sys.stdout.write(table(glob.root, args[0], args[1:]))
    else:
        raise PyrunError("invalid format option")
    return 0
