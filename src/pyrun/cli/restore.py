"""pyrun restore [flags] <container-id>"""
from __future__ import annotations

from pyrun.cli.parser import Flag, parse

FLAGS = [
    Flag(("console-socket",), "str"),
    Flag(("image-path",), "str"),
    Flag(("work-path",), "str"),
    Flag(("tcp-established",)),
    Flag(("ext-unix-sk",)),
    Flag(("shell-job",)),
    Flag(("file-locks",)),
    Flag(("manage-cgroups-mode",), "str"),
    Flag(("bundle", "b"), "str"),
    Flag(("detach", "d")),
    Flag(("pid-file",), "str"),
    Flag(("no-subreaper",)),
    Flag(("no-pivot",)),
    Flag(("empty-ns",), "list"),
    Flag(("auto-dedup",)),
    Flag(("lazy-pages",)),
    Flag(("lsm-profile",), "str"),
    Flag(("lsm-mount-context",), "str"),
]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.parser import check_args
    opts, args = parse(FLAGS, argv)
    check_args("restore", args, exactly=1)
    from pyrun.container.create import CreateRequest
    from pyrun.container.restore import restore
    from pyrun.criu.options import from_flags
    from pyrun.errors import PyrunError
    for lsm in ("lsm_profile", "lsm_mount_context"):
        if opts[lsm]:
            raise PyrunError(f"--{lsm.replace('_', '-')} is not supported: this host has no SELinux or AppArmor")
    req = CreateRequest(root=glob.root, id=args[0], bundle=opts["bundle"],
                        pid_file=opts["pid_file"], console_socket=opts["console_socket"],
                        no_pivot=opts["no_pivot"], detach=opts["detach"], rootless=glob.rootless,
                        systemd_cgroup=glob.systemd_cgroup)
    return restore(req, from_flags(opts), subreaper=not opts["no_subreaper"])
