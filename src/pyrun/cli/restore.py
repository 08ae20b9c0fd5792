"""pyrun restore [flags] <container-id>"""
from __future__ import annotations

from pyrun.cli.criu_flags import in_order
from pyrun.cli.parser import Flag, parse

FLAGS = in_order(
    Flag(("console-socket",), "str"),
    "image-path",
    "work-path",
    "tcp-established",
    "ext-unix-sk",
    "shell-job",
    "file-locks",
    "manage-cgroups-mode",
    Flag(("bundle", "b"), "str"),
    Flag(("detach", "d")),
    Flag(("pid-file",), "str"),
    Flag(("no-subreaper",)),
    Flag(("no-pivot",)),
    "empty-ns",
    "auto-dedup",
    "lazy-pages",
    Flag(("lsm-profile",), "str"),
    Flag(("lsm-mount-context",), "str"),
)


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
