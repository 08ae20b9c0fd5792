"""pyrun create [flags] <container-id>"""
from __future__ import annotations

from pyrun.cli.parser import Flag, parse

FLAGS = [
    Flag(("bundle", "b"), "str"),
    Flag(("console-socket",), "str"),
    Flag(("pidfd-socket",), "str"),
    Flag(("pid-file",), "str"),
    Flag(("no-pivot",)),
    Flag(("no-new-keyring",)),
    Flag(("preserve-fds",), "int", 0),
]


def request(glob, opts, args, usage: str):
    from pyrun.cli.parser import check_args
    from pyrun.container.create import CreateRequest
    check_args(usage, args, exactly=1)
    return CreateRequest(root=glob.root, id=args[0], bundle=opts["bundle"], pid_file=opts["pid_file"],
                         console_socket=opts["console_socket"], pidfd_socket=opts["pidfd_socket"],
                         no_pivot=opts["no_pivot"],
                         no_new_keyring=opts["no_new_keyring"], preserve_fds=opts["preserve_fds"],
                         rootless=glob.rootless, systemd_cgroup=glob.systemd_cgroup)


def main(glob, argv: list[str]) -> int:
    from pyrun.container.create import create
    opts, args = parse(FLAGS, argv)
    create(request(glob, opts, args, "create"))
    return 0
