"""pyrun spec [--bundle DIR] [--rootless]: write a starter config.json."""
from __future__ import annotations

import json
import os

from pyrun.cli.parser import Flag, check_args, parse
from pyrun.errors import PyrunError

FLAGS = [Flag(("bundle", "b"), "str"), Flag(("rootless",))]


def main(glob, argv: list[str]) -> int:
    from pyrun.spec.template import default_spec, rootless_spec
    opts, args = parse(FLAGS, argv)
    check_args("spec", args, exactly=0)
    path = os.path.join(opts["bundle"] or ".", "config.json")
    if os.path.exists(path):
        raise PyrunError("File config.json exists. Remove it first")
    spec = rootless_spec() if opts["rootless"] else default_spec()
    try:
        with open(path, "w") as f:
            json.dump(spec, f, indent="\t")
            f.write("\n")
    except OSError as e:
        from pyrun.errors import strerror
        raise PyrunError(f"open {path}: {strerror(e.errno)}") from None
    return 0
