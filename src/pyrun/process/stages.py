"""The forked stages between `pyrun create` and the container's pid 1.

    create (parent)            stage-1 "bootstrap"               stage-2 "init"
    ---------------            -------------------               --------------
    cgroup dirs, fork ------>  join cgroup, oom_score_adj
                               setns(paths), user first
    write uid/gid maps <-----  unshare(USER) + request maps
                               unshare(all other new namespaces)
                               time offsets, fork ------------>  process.init.run()
    learn init pid  <--------  report pid, exit                  (pid 1 of new pid ns)
    write cgroup limits (stage 1 gone: the cgroup holds only the init)

No stage re-executes anything: each is a fork of the parent and runs code
that is already imported.  Every child leaves through os._exit so that no
parent cleanup or buffered output runs twice.
"""
from __future__ import annotations

import errno
import os
import sys

from pyrun.errors import InitError, oserror_text
from pyrun.linux import procfs, syscalls as s
from pyrun.linux.namespaces import JOIN_ORDER, NAMESPACES
from pyrun.process.channel import Channel, Msg
from pyrun.process import guard, init
from pyrun.process.context import LaunchContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrun.cgroups.manager import Cgroup


def child_main(ctx: LaunchContext, ch: Channel, stage: object) -> None:
    """Run a stage; report any failure over the channel; never return."""
    code = 1
    # Stages never print; failures go over the channel. Without Python-level
    # stdio, a warning cannot loop on a write(2) that a seccomp filter makes
    # return 0 (defaultAction SCMP_ACT_ERRNO with errnoRet 0), and the stage
    # goes on to fail and exit instead of spinning.
    sys.stdout = sys.stderr = None  # type: ignore[assignment]
    try:
        stage(ctx, ch)  # type: ignore[operator]
        code = 0
    except InitError as e:
        _report(ch, e.step, str(e).split(": ", 1)[1])
    except OSError as e:
        _report(ch, "", oserror_text(e))
    except BaseException as e:  # noqa: BLE001 - the parent must learn of every failure
        _report(ch, "", f"{type(e).__name__}: {e}\n{_where(e)}")
    finally:
        os._exit(code)


def _where(e: BaseException) -> str:
    """The frames of an unexpected exception, innermost last. Not `traceback`:
    it costs every create ~1.5 ms to import (textwrap, linecache, tokenize) and
    must be imported before the host's files are out of reach."""
    lines = []
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}')
        tb = tb.tb_next
    return "Traceback (most recent call last):\n" + "\n".join(lines)


def _report(ch: Channel, step: str, message: str) -> None:
    try:
        ch.send(Msg.ERROR, step=step, msg=message)
    except OSError:
        pass




def bootstrap(ctx: LaunchContext, ch: Channel) -> None:
    """Stage 1: enter the cgroup and the namespaces, then fork the init.

    The init, forked by us, is armed against its parent's death only once
    we are reaped (init.py's first step): our own normal exit must not kill it."""
    init.die_with_parent(ch)
    for fd in ctx.parent_fds:
        os.close(fd)   # an inherited flock would keep `start` waiting forever
    ctx.parent_fds = []
    _close_inherited_fds(ctx, ch)
    init.preload(ctx)
    # Meanwhile the guard has started: it must hold us before anything is
    # forked, and (without CAP_SYS_PTRACE) while we are still dumpable.
    guard.wait_for_guard(ctx.guard_fd)
    ctx.guard_fd = -1
    plan = dict(bootstrap_plan(ctx))
    if ctx.trace_fd >= 0:
        from pyrun import trace
        for name, actions in plan.items():
            trace.emit(ctx.trace_fd, "stage 1", name, actions)
    # Before any namespace is joined, keep container processes away from this
    # host interpreter's /proc/<pid>/exe and memory (CVE-2019-5736 class).
    s.prctl(s.PR_SET_DUMPABLE, 0)
    step = "open procfs"
    try:
        # Before any namespace or mount of the container exists: every later
        # procfs access goes through this fd, never the container's /proc.
        ctx.proc_fd = procfs.open_root()
        step = "join cgroup"
        # As runc: in the container's cgroup before any namespace exists, so that
        # everything the container costs the kernel is charged there and a new
        # cgroup namespace is rooted at the container's cgroup.
        if plan["join cgroup"]:
            _join_cgroup(ctx.cgroup, os.getpid())
        step = "set oom_score_adj"
        for act in plan[step]:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(act["value"])
        step = "join namespaces"
        _join_namespaces([(act["type"], act["path"]) for act in plan[step]])
        step = "create user namespace"
        if plan[step]:
            s.unshare(s.CLONE_NEWUSER)
            # An ordinary user's parent (and newuidmap) can only write the
            # maps of a dumpable process: /proc/<pid> is root's otherwise.
            s.prctl(s.PR_SET_DUMPABLE, 1)
            ch.send(Msg.USERMAP_REQUEST)
            ch.expect(Msg.USERMAP_DONE)
            s.prctl(s.PR_SET_DUMPABLE, 0)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            init.die_with_parent(ch)     # the kernel cleared it with the uid/gid change
        step = "create namespaces"
        flags = 0
        for act in plan[step]:
            for ns in act["namespaces"]:
                flags |= NAMESPACES[ns][0]
        if flags:
            s.unshare(flags)
        step = "receive bind sources"
        if plan[step]:
            _receive_bind_sources(ctx, ch)
        step = "set time offsets"
        for act in plan[step]:
            _write_time_offsets(act["lines"], "user" in ctx.new_namespaces)
    except OSError as e:
        raise InitError(step, oserror_text(e)) from None

    pid = os.fork()
    if pid == 0:
        child_main(ctx, ch, init.run)
    ch.send(Msg.INIT_PID, pid=pid)


def bootstrap_plan(ctx: LaunchContext) -> list[tuple[str, list[dict[str, object]]]]:
    """Stage 1's steps and what each does, computed from the context: bootstrap
    performs exactly these (and `pyrun explain` prints them)."""
    cgroup = ctx.cgroup.join_plan()
    adj = ctx.process.get("oomScoreAdj")
    others = [ns for ns in ctx.new_namespaces if ns != "user"]
    user = []
    if "user" in ctx.new_namespaces:
        user = [{"do": "unshare", "namespaces": ["user"]},
                {"do": "ask the parent to write uid_map/gid_map",
                 "uidMappings": ctx.linux.get("uidMappings") or [], "gidMappings": ctx.linux.get("gidMappings") or []},
                {"do": "setresgid/setresuid", "id": 0}]
    offsets = ctx.linux.get("timeOffsets") or {}
    return [
        ("open procfs", [{"do": "open the runtime's /proc (checked to be a procfs root)"}]),
        ("join cgroup", cgroup),
        ("set oom_score_adj", [{"do": "write /proc/self/oom_score_adj", "value": str(adj)}] if adj is not None else []),
        ("join namespaces", [{"do": "setns", "type": ns, "path": ctx.join_namespaces[ns]}
                             for ns in JOIN_ORDER if ctx.join_namespaces.get(ns)]),
        ("create user namespace", user),
        ("create namespaces", [{"do": "unshare", "namespaces": others}] if others else []),
        ("receive bind sources", [{"do": "ask the parent to open the bind sources in this mount namespace",
                                   "mounts": ctx.bind_source_indices}] if ctx.bind_source_indices else []),
        ("set time offsets", [{"do": "write /proc/self/timens_offsets",
                               "lines": [f"{clock} {v.get('secs', 0)} {v.get('nanosecs', 0)}"
                                         for clock, v in offsets.items()]}]
         if "time" in ctx.new_namespaces and offsets else []),
        ("fork the init", [{"do": "fork", "then": "the init's steps"}]),
    ]


def _receive_bind_sources(ctx: LaunchContext, ch: Channel) -> None:
    """The O_PATH fds the parent opened through our /proc/<pid>/root: in our
    mount namespace, so the init's binds of them keep the kernel's locks."""
    ch.send(Msg.BIND_SOURCES_REQUEST)
    while (msg := ch.recv()).type == Msg.BIND_SOURCE:
        ctx.bind_sources[msg.data["index"]] = msg.fds[0]
    if msg.type != Msg.BIND_SOURCES_DONE:
        raise OSError(0, f"expected {Msg.BIND_SOURCES_DONE}, got {msg.type}")


def _close_inherited_fds(ctx: LaunchContext, ch: Channel) -> None:
    """Whatever the caller leaked to us must not live on in the container's
    init while it waits for `start` (a pipe the caller reads to EOF would
    hang): keep only stdio, the preserved fds and our own."""
    keep = {0, 1, 2, ch.sock.fileno()} | set(range(3, 3 + ctx.preserve_fds))
    if ctx.fifo_fd >= 0:
        keep.add(ctx.fifo_fd)
    if ctx.guard_fd >= 0:
        keep.add(ctx.guard_fd)
    if ctx.console_socket is not None:
        keep.add(ctx.console_socket.fileno())
    keep.update(ctx.idmapped_mounts.values())
    if ctx.trace_fd >= 0:
        keep.add(ctx.trace_fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _join_namespaces(joins: list[tuple[str, str]]) -> None:
    """As runc's nsexec (and nsenter(1)): every namespace but the user one
    first, as what we are now (a namespace another user namespace owns may be
    joinable only from here), then the user namespace, then, from inside it,
    those refused so far (EPERM: a rootless runtime gains the right only there)."""
    # Open every path first: after joining a mount namespace host paths are gone.
    fds = []
    try:
        for ns, path in joins:
            fds.append((ns, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        pending = list(fds)
        for user_pass, last in ((False, False), (True, False), (False, True)):
            for ns, path, fd in list(pending):
                if (ns == "user") != user_pass:
                    continue
                try:
                    s.setns(fd, NAMESPACES[ns][0])
                except OSError as e:
                    if e.errno == errno.EPERM and not last and not user_pass:
                        continue       # once more from inside the user namespace
                    raise OSError(e.errno, f"failed to join {ns} namespace {path}: {oserror_text(e)}") from None
                pending.remove((ns, path, fd))
                if ns == "user":
                    _become_root()
    finally:
        for _ns, _path, fd in fds:
            os.close(fd)


def _become_root() -> None:
    """Root in a joined user namespace, as after creating one: our host ids are
    unmapped there, and the kernel refuses new mounts (devpts: EOVERFLOW) to a
    process whose fsuid/fsgid it cannot map (runc's nsexec)."""
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as e:
        raise OSError(e.errno, f"failed to become root in user namespace: {oserror_text(e)}") from None


def _write_time_offsets(lines: list[str], in_new_userns: bool) -> None:
    """In a new user namespace our /proc/self files belong to the host's root
    while we are not dumpable (EACCES, though we hold CAP_SYS_TIME over the
    time namespace): dumpable for the write only, as for the id maps."""
    if not lines:
        return
    if in_new_userns:
        s.prctl(s.PR_SET_DUMPABLE, 1)
    try:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("\n".join(lines) + "\n")
    finally:
        if in_new_userns:
            s.prctl(s.PR_SET_DUMPABLE, 0)


def _join_cgroup(cgroup: Cgroup, pid: int) -> None:
    """Into the container's cgroup (exec: a --cgroup sub-cgroup): a missing
    one is reported in runc's words, which its exec.bats greps."""
    try:
        cgroup.join(pid)
    except OSError as e:
        from pyrun.errors import strerror
        raise OSError(e.errno, f"error adding pid {pid} to cgroups: failed to write {pid}: "
                               f"open {e.filename}: {strerror(e.errno)}") from None
