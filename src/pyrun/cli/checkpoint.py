"""pyrun checkpoint [flags] <container-id>"""
from __future__ import annotations

from pyrun.cli.criu_flags import in_order
from pyrun.cli.parser import Flag, parse

FLAGS = in_order(
    "image-path",
    "work-path",
    Flag(("parent-path",), "str"),
    Flag(("leave-running",)),
    "tcp-established",
    Flag(("tcp-skip-in-flight",)),
    Flag(("link-remap",)),
    "ext-unix-sk",
    "shell-job",
    "lazy-pages",
    Flag(("status-fd",), "int", -1),
    Flag(("page-server",), "str"),
    "file-locks",
    Flag(("pre-dump",)),
    "manage-cgroups-mode",
    "empty-ns",
    "auto-dedup",
)


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    opts, args = parse(FLAGS, argv)
    check_args("checkpoint", args, exactly=1)
    from pyrun.container.checkpoint import checkpoint
    checkpoint(glob.root, args[0], opts)
    return 0
