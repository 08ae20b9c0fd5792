"""pyrun state <container-id>"""
from __future__ import annotations

import sys


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args, parse
    from pyrun.container.query import state
    _opts, args = parse([], argv)
    check_args("state", args, exactly=1)
    from pyrun.state.jsonio import dumps     # json.dumps' output, without importing json
    sys.stdout.write(dumps(state(glob.root, args[0]), indent=2) + "\n")
    return 0
