"""`exec`: start another process inside a running container.

The process joins every namespace of the container's init (user first) and
its cgroup, then gets the same confinement as the init: rlimits, no_new_privs,
seccomp, capabilities, user and cwd (process/init.py EXEC_STEPS).
"""
from __future__ import annotations

import os
from pyrun.records import dataclass, field   # not dataclasses: ~4 ms of imports
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun import faults, log, program
from pyrun.errors import START_FAILED, ConfigError, FlagError, PyrunError, strerror
from pyrun.linux import unixsock    # not socket: ~4 ms of imports
from pyrun.state import jsonio       # not json (re) nor copy
from pyrun.state.status import PAUSED, STOPPED, status_of
from pyrun.state.store import ContainerDir, write_pid_file


@dataclass
class ExecRequest:
    root: str
    id: str
    args: list[str] = field(default_factory=list)
    process_file: str | None = None
    detach: bool = False
    pid_file: str | None = None
    console_socket: str | None = None
    pidfd_socket: str | None = None
    tty: bool = False
    cwd: str | None = None
    env: list[str] = field(default_factory=list)
    user: str | None = None
    additional_gids: list[str] = field(default_factory=list)
    caps: list[str] = field(default_factory=list)
    no_new_privs: bool = False
    apparmor: str | None = None
    process_label: str | None = None
    preserve_fds: int = 0
    cgroup: list[str] = field(default_factory=list)
    ignore_paused: bool = False


def exec_process(req: ExecRequest) -> int:
    with ContainerDir.open(req.root, req.id, lock=False) as cdir:
        state = cdir.load()
        status = status_of(cdir, state)
    if status == STOPPED:
        raise PyrunError("cannot exec in a stopped container")
    if status == PAUSED and not req.ignore_paused:
        raise PyrunError("cannot exec in a paused container (use --ignore-paused to override)")
    cgroup = _cgroup(req, state)
    if status != PAUSED:
        cgroup.warm_join()      # the kernel's slow part of stage 1's join starts now; launch reaps it
    try:
        return _exec(req, state, cgroup)
    except BaseException:
        cgroup.reap_warm()
        raise


def _exec(req: ExecRequest, state: dict[str, Any], cgroup: Any) -> int:
    config = state["config"]
    process = _process(req, config)
    if process.get("capabilities"):     # what create dropped (or a --process file asks for)
        from pyrun.container.capsets import drop_ungrantable
        for warning in drop_ungrantable(process):
            log.warning(warning)
    terminal = bool(process.get("terminal"))
    if terminal and req.detach and not req.console_socket:
        raise PyrunError(f"cannot allocate tty if {program()} will detach without setting console socket")
    if not terminal and req.console_socket:
        raise PyrunError(f"cannot use console socket if {program()} will not detach or allocate tty")
    if req.pid_file:
        req.pid_file = os.path.abspath(req.pid_file)

    spec = dict(config, process=process)
    sink_parent, console = None, None
    if terminal:
        if req.console_socket:
            console = _connect(req.console_socket)
        else:
            sink_parent, console = unixsock.socketpair()
    ctx = _context(req, state, spec, console, cgroup)
    pidfd_sock = None
    if req.pidfd_socket:
        from pyrun.container import pidfd
        pidfd_sock = pidfd.connect(req.pidfd_socket)
        ctx.parent_fds.append(pidfd_sock.fileno())     # not for the process
    from pyrun.process.launcher import launch
    try:
        launched = launch(ctx)
    except PyrunError as e:
        raise e.reworded(f"{START_FAILED}: {e}") from None
    faults.point("exec: launched")
    if log.debugging():
        from pyrun.container.create import init_steps
        log.debug(f"exec {req.id}: process {launched.pid} ready after its steps: {init_steps('exec')}")
    if req.pid_file:
        try:
            write_pid_file(req.pid_file, launched.pid)
        except PyrunError:
            _abandon(launched)     # as runc: the process must not run on unrecorded
            raise
    if pidfd_sock is not None:
        try:
            pidfd.send(pidfd_sock, launched.pid, "setns")
        except PyrunError:
            _abandon(launched)
            raise
    from pyrun.container.foreground import copy_size, forward_signals, proxy_terminal, wait
    if not req.detach:
        forward_signals(launched.pid)     # before the process runs: no signal may slip past
    master = None
    if sink_parent is not None:           # the pty was sent before READY: size it before exec
        from pyrun.process.terminal import receive_master
        master = receive_master(sink_parent)
        sink_parent.close()
        copy_size(master)
    try:
        launched.release(until_exec=True)
    except PyrunError as e:
        if master is not None:
            os.close(master)
        _reap(launched.pid)
        raise e.reworded(f"{START_FAILED}: {e}", 255) from None
    log.debug(f"exec {req.id}: process {launched.pid} released")
    if req.detach:
        return 0
    if master is not None:
        return proxy_terminal(master, launched.pid)
    return wait(launched.pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _abandon(launched: Any) -> None:
    """Kill the launched process before it runs (it waits for release) and reap it:
    pyrun is its subreaper."""
    import _signal
    try:
        os.kill(launched.pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(launched.pid, 0)
    except ChildProcessError:
        pass
    launched.channel.close()


def _process(req: ExecRequest, config: dict[str, Any]) -> dict[str, Any]:
    """runc's getProcess: a --process file, or the container's process with
    the command line's arguments and flags on top."""
    if req.process_file:
        try:
            with open(req.process_file) as f:
                process = jsonio.loads(f.read())
        except OSError as e:
            raise ConfigError(f"open {req.process_file}: {strerror(e.errno)}") from None
        except ValueError as e:
            raise ConfigError(f"process file {req.process_file}: {e}") from None
        if not isinstance(process, dict) or not process.get("args"):
            raise ConfigError(f"process file {req.process_file}: args must not be empty")
        process.setdefault("cwd", "/")
        if not str(process["cwd"]).startswith("/"):
            raise ConfigError(f"process file {req.process_file}: cwd must be an absolute path")
        return process
    if not req.args:
        raise PyrunError("exec args cannot be empty")
    process = jsonio.loads(jsonio.dumps(config.get("process") or {}))   # a deep copy
    process["args"] = list(req.args)
    process["terminal"] = req.tty
    if req.cwd:
        process["cwd"] = req.cwd
    process["env"] = list(process.get("env") or []) + list(req.env)
    if req.user:
        uid, sep, gid = req.user.partition(":")
        user = process.setdefault("user", {})
        user["uid"] = _atoi(uid, "bad uid")
        if sep:
            user["gid"] = _atoi(gid, "bad gid")
    if req.additional_gids:
        gids = []
        for g in req.additional_gids:      # runc: an Int64Slice flag, refused as the flag is parsed
            if not _is_int(g):
                raise FlagError(f'invalid value "{g}" for flag -g: strconv.ParseInt: parsing "{g}": invalid syntax')
            gids.append(int(g))
        process.setdefault("user", {})["additionalGids"] = gids
    if req.caps:
        caps = process.setdefault("capabilities", {})
        kinds = ["bounding", "effective", "permitted"]
        if caps.get("inheritable") is not None:     # runc 1.2+: ambient too, when it can be raised at all
            kinds.append("ambient")
        for kind in kinds:
            caps[kind] = list(caps.get(kind) or []) + [c for c in req.caps if c not in (caps.get(kind) or [])]
    if req.no_new_privs:
        process["noNewPrivileges"] = True
    if req.apparmor:
        process["apparmorProfile"] = req.apparmor
    if req.process_label:
        process["selinuxLabel"] = req.process_label
    from pyrun.spec.load import check_process_names
    check_process_names(process)
    return process


def _is_int(text: str) -> bool:
    """What Go's strconv.Atoi/ParseInt take: an optional sign, then ASCII digits."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    return digits.isascii() and digits.isdigit()


def _atoi(text: str, what: str) -> int:
    """Go's strconv.Atoi with runc's wording: bad uid: strconv.Atoi: parsing "x": invalid syntax."""
    if not _is_int(text):
        raise PyrunError(f'{what}: strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _connect(path: str) -> unixsock.Socket:
    try:
        return unixsock.connect(path)
    except OSError as e:
        raise PyrunError(f"failed to connect to console socket {path}: {e.strerror}") from None


def _cgroup(req: ExecRequest, state: dict[str, Any]) -> Any:
    """The container's cgroup, or the --cgroup sub-cgroups the process joins
    (checked by the cgroup before anything is forked: never outside its own)."""
    from pyrun.cgroups.manager import load
    return load(state).sub(_sub_cgroups(req.cgroup))


def _sub_cgroups(args: list[str]) -> dict[str, str]:
    """runc's getSubCgroupPaths: `[<controller>[,<controller>...]:]<path>`,
    each controller once; a path for all of them only as the one argument."""
    subs: dict[str, str] = {}
    for arg in args:
        controllers, colon, sub = arg.partition(":")
        if not colon:
            if len(args) != 1:
                raise PyrunError(f"invalid --cgroup argument: {arg} (missing <controller>: prefix)", exit_code=255)
            subs[""] = arg
            continue
        for controller in controllers.split(","):
            if not controller:
                raise PyrunError(f"invalid --cgroup argument: {arg} (empty <controller> prefix)", exit_code=255)
            if controller in subs:
                raise PyrunError(f"invalid --cgroup argument(s): controller {controller} specified multiple times",
                                 exit_code=255)
            subs[controller] = sub
    return subs


def _context(req: ExecRequest, state: dict[str, Any], spec: dict[str, Any],
             console: unixsock.Socket | None, cgroup: Any) -> Any:
    from pyrun.process.context import LaunchContext
    seccomp = None
    if (spec.get("linux") or {}).get("seccomp"):
        from pyrun.seccomp import cache
        seccomp = cache.compiled(spec["linux"]["seccomp"], req.root)
    return LaunchContext(container_id=req.id, spec=spec, bundle=state.get("bundle", ""),
                         rootfs=state.get("rootfs", ""), fifo_fd=-1,
                         cgroup=cgroup, cgroup_binds=[], new_namespaces=[],
                         join_namespaces=dict(state.get("namespace_paths") or {}),
                         console_socket=console, preserve_fds=req.preserve_fds,
                         mode="exec", seccomp=seccomp)
