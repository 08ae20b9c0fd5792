"""pyrun features: the runtime-spec Features structure, as indented JSON."""
from __future__ import annotations

import json
import sys


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args, parse
    from pyrun.features import build
    _opts, args = parse([], argv)
    check_args("features", args, exactly=0)
    sys.stdout.write(json.dumps(build(), indent=2) + "\n")
    return 0
