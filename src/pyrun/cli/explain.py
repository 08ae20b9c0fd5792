"""pyrun explain [--bundle DIR | --config FILE] [--format text|json] [<container-id>]"""
from __future__ import annotations

import sys

from pyrun.cli.parser import Flag, parse

FLAGS = [
    Flag(("bundle", "b"), "str"),
    Flag(("config", "c"), "str"),
    Flag(("format", "f"), "str", "text"),
    Flag(("pid-file",), "str"),
    Flag(("console-socket",), "str"),
    Flag(("no-pivot",)),
    Flag(("no-new-keyring",)),
]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    from pyrun.container.explain import explain, text
    from pyrun.errors import UsageError
    opts, args = parse(FLAGS, argv)
    check_args("explain", args, maximum=1)
    if opts["format"] not in ("text", "json"):
        raise UsageError(f"invalid format option: {opts['format']!r} (text or json)")
    if opts["bundle"] and opts["config"]:
        raise UsageError("--bundle and --config exclude each other")
    plan = explain(glob.root, args[0] if args else "explain", opts["bundle"], opts["config"],
                   glob.rootless, opts["no_pivot"], opts["no_new_keyring"], opts["pid_file"],
                   opts["console_socket"])
    if opts["format"] == "json":
        from pyrun.state.jsonio import dumps
        sys.stdout.write(dumps(plan, indent=2) + "\n")
    else:
        sys.stdout.write(text(plan))
    return 0
