"""pyrun list [--format table|json] [--quiet]"""
from __future__ import annotations

import sys

from pyrun.cli.parser import Flag, check_args, parse
from pyrun.errors import PyrunError

FLAGS = [Flag(("format", "f"), "str", "table"), Flag(("quiet", "q"))]


def main(glob, argv: list[str]) -> int:
    from pyrun.container.query import list_states
    opts, args = parse(FLAGS, argv)
    check_args("list", args, exactly=0)
    states = list_states(glob.root, missing_ok=not glob.root_given)   # no default root yet: no containers
    if opts["quiet"]:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif opts["format"] == "json":
        from pyrun.state.jsonio import dumps     # json.dumps' output, without importing json; runc prints null, not []
        sys.stdout.write(dumps(states or None, compact=True) + "\n")
    elif opts["format"] == "table":
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [[s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]]
                 for s in states]
        widths = [max(12, max(len(r[i]) + 1 for r in rows)) for i in range(5)]
        for r in rows:
            sys.stdout.write("".join(c.ljust(w) for c, w in zip(r, widths)) + r[5] + "\n")
    else:
        raise PyrunError("invalid format option")
    return 0
