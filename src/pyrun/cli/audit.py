"""pyrun audit [--format text|json] [--strict] <container-id>"""
from __future__ import annotations

import sys

from pyrun.cli.parser import Flag, parse

FLAGS = [
    Flag(("format", "f"), "str", "text"),
    Flag(("strict",)),
]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    from pyrun.container.audit import HIGH, audit, text
    from pyrun.errors import UsageError
    opts, args = parse(FLAGS, argv)
    check_args("audit", args, exactly=1)
    if opts["format"] not in ("text", "json"):
        raise UsageError(f"invalid format option: {opts['format']!r} (text or json)")
    report = audit(glob.root, args[0])
    if opts["format"] == "json":
        from pyrun.state.jsonio import dumps
        sys.stdout.write(dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(text(report))
    if opts["strict"] and any(f["severity"] == HIGH for f in report["findings"]):
        return 1
    return 0
