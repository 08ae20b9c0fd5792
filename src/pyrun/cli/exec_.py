"""pyrun exec [flags] <container-id> [command args...]"""
from __future__ import annotations

from pyrun.cli.parser import Flag, parse

FLAGS = [
    Flag(("process", "p"), "str"), Flag(("detach", "d")), Flag(("pid-file",), "str"),
    Flag(("console-socket",), "str"), Flag(("pidfd-socket",), "str"), Flag(("tty", "t")),
    Flag(("cwd",), "str"), Flag(("env", "e"), "list"), Flag(("user", "u"), "str"),
    Flag(("additional-gids", "g"), "list"), Flag(("cap", "c"), "list"),
    Flag(("no-new-privs",)), Flag(("apparmor",), "str"), Flag(("process-label",), "str"),
    Flag(("preserve-fds",), "int", 0), Flag(("cgroup",), "list"), Flag(("ignore-paused",)),
]


def main(glob, argv: list[str]) -> int:
    from pyrun.cli.main import require_args
    from pyrun.container.exec_ import ExecRequest, exec_process
    opts, args = parse(FLAGS, argv)
    require_args(args, 1, "exec")
    return exec_process(ExecRequest(
        root=glob.root, id=args[0], args=args[1:], process_file=opts["process"],
        detach=opts["detach"], pid_file=opts["pid_file"], console_socket=opts["console_socket"],
        pidfd_socket=opts["pidfd_socket"], tty=opts["tty"], cwd=opts["cwd"], env=opts["env"], user=opts["user"],
        additional_gids=opts["additional_gids"], caps=opts["cap"], no_new_privs=opts["no_new_privs"],
        apparmor=opts["apparmor"], process_label=opts["process_label"],
        preserve_fds=opts["preserve_fds"], cgroup=opts["cgroup"], ignore_paused=opts["ignore_paused"]))
