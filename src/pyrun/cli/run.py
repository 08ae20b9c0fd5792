"""pyrun run [flags] <container-id>"""
from __future__ import annotations

from pyrun.cli import create as create_cli
from pyrun.cli.parser import Flag, parse

FLAGS = create_cli.FLAGS + [Flag(("detach", "d")), Flag(("keep",)), Flag(("no-subreaper",))]


def main(glob, argv: list[str]) -> int:
    from pyrun.container.run import run
    opts, args = parse(FLAGS, argv)
    req = create_cli.request(glob, opts, args, "run")
    req.detach = opts["detach"]
    return run(req, keep=opts["keep"])
