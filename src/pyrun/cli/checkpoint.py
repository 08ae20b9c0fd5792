"""pyrun checkpoint [flags] <container-id>"""
from __future__ import annotations

from pyrun.cli.parser import Flag, parse

FLAGS = [
    Flag(("image-path",), "str"),
    Flag(("work-path",), "str"),
    Flag(("parent-path",), "str"),
    Flag(("leave-running",)),
    Flag(("tcp-established",)),
    Flag(("tcp-skip-in-flight",)),
    Flag(("link-remap",)),
    Flag(("ext-unix-sk",)),
    Flag(("shell-job",)),
    Flag(("lazy-pages",)),
    Flag(("status-fd",), "int", -1),
    Flag(("page-server",), "str"),
    Flag(("file-locks",)),
    Flag(("pre-dump",)),
    Flag(("manage-cgroups-mode",), "str"),
    Flag(("empty-ns",), "list"),
    Flag(("auto-dedup",)),
]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    opts, args = parse(FLAGS, argv)
    check_args("checkpoint", args, exactly=1)
    from pyrun.container.checkpoint import checkpoint
    checkpoint(glob.root, args[0], opts)
    return 0
