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

import os
import sys

from pyrun.errors import InitError, oserror_text
from pyrun.linux import procfs, syscalls as s
from pyrun.linux.namespaces import JOIN_ORDER, NAMESPACES
from pyrun.process.channel import Channel, Msg
from pyrun.process import init
from pyrun.process.context import LaunchContext


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
        ctx.cgroup.join(os.getpid())
        step = "set oom_score_adj"
        adj = ctx.process.get("oomScoreAdj")
        if adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(adj))
        step = "join namespaces"
        _join_namespaces(ctx)
        step = "create user namespace"
        if "user" in ctx.new_namespaces:
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
        for ns in ctx.new_namespaces:
            if ns != "user":
                flags |= NAMESPACES[ns][0]
        if flags:
            s.unshare(flags)
        step = "set time offsets"
        if "time" in ctx.new_namespaces:
            _write_time_offsets(ctx.linux.get("timeOffsets") or {})
    except OSError as e:
        raise InitError(step, oserror_text(e)) from None

    pid = os.fork()
    if pid == 0:
        child_main(ctx, ch, init.run)
    ch.send(Msg.INIT_PID, pid=pid)


def _close_inherited_fds(ctx: LaunchContext, ch: Channel) -> None:
    """Whatever the caller leaked to us must not live on in the container's
    init while it waits for `start` (a pipe the caller reads to EOF would
    hang): keep only stdio, the preserved fds and our own."""
    keep = {0, 1, 2, ch.sock.fileno()} | set(range(3, 3 + ctx.preserve_fds))
    if ctx.fifo_fd >= 0:
        keep.add(ctx.fifo_fd)
    if ctx.console_socket is not None:
        keep.add(ctx.console_socket.fileno())
    keep.update(ctx.idmapped_mounts.values())
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _join_namespaces(ctx: LaunchContext) -> None:
    # Open every path first: after joining a mount namespace host paths are gone.
    fds = []
    try:
        for ns in JOIN_ORDER:
            path = ctx.join_namespaces.get(ns)
            if path:
                fds.append((ns, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        for ns, path, fd in fds:
            try:
                s.setns(fd, NAMESPACES[ns][0])
            except OSError as e:
                raise OSError(e.errno, f"failed to join {ns} namespace {path}: {oserror_text(e)}") from None
    finally:
        for _ns, _path, fd in fds:
            os.close(fd)


def _write_time_offsets(offsets: dict[str, dict[str, int]]) -> None:
    lines = [f"{clock} {v.get('secs', 0)} {v.get('nanosecs', 0)}" for clock, v in offsets.items()]
    if lines:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("\n".join(lines) + "\n")
