"""pyrun state <container-id>"""
from __future__ import annotations

import sys


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.main import require_args
    from pyrun.cli.parser import parse
    from pyrun.container.query import state
    _opts, args = parse([], argv)
    require_args(args, 1, "state")
    from pyrun.state.jsonio import dumps     # json.dumps' output, without importing json
    sys.stdout.write(dumps(state(glob.root, args[0]), indent=2) + "\n")
    return 0
