"""Parent side of the stages: fork, answer the stages' requests, learn the init's pid."""
from __future__ import annotations

import os
import resource
import _signal as signal    # not signal: its enums cost ~1.5 ms
from pyrun.records import dataclass   # not dataclasses: ~4 ms of imports

from pyrun import faults, log
from pyrun.errors import PyrunError, init_failed, strerror
from pyrun.linux import syscalls as s
from pyrun.process import channel as chan, guard
from pyrun.process.channel import Channel, ChannelClosed, Msg
from pyrun.process.context import LaunchContext
from pyrun.process.stages import bootstrap, child_main

# Requests from the init that need its host pid (stage 1's INIT_PID).
_ABOUT_THE_INIT = frozenset({Msg.MOUNT_SOURCE_REQUEST, Msg.HOOKS_REQUEST, Msg.RLIMITS_REQUEST, Msg.SECCOMP_LISTENER, Msg.READY})

RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


@dataclass
class Launched:
    pid: int
    channel: Channel

    def release(self, until_exec: bool = False) -> None:
        """State is recorded: let the init go on to wait for `start`.  An
        exec'd process holds its end (close-on-exec) until execve: with
        `until_exec`, read to that EOF, and a failing last step is raised."""
        self.channel.send(Msg.ACK)
        try:
            while until_exec:
                msg = self.channel.recv()
                if msg.type == Msg.ERROR:
                    raise init_failed(msg.data.get("step"), msg.data.get("msg", ""))
                if msg.type == Msg.FAULT:
                    faults.die()
        except ChannelClosed:
            pass
        finally:
            self.channel.close()


def launch(ctx: LaunchContext) -> Launched:
    """Fork the stages and return once the init reports ready.

    The caller becomes a child subreaper first, so the init (orphaned when
    stage 1 exits) is ours to reap on failure; when the caller exits, the
    kernel hands the init on to the caller's own subreaper (the shim, conmon).
    """
    s.prctl(s.PR_SET_CHILD_SUBREAPER, 1)
    parent, child = chan.pair()
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    affinity = _exec_affinity(ctx)
    ours = _enter_initial_affinity(affinity.get("initial"))
    pid = -1
    try:
        pid = os.fork()
    finally:
        if ours is not None and pid != 0:
            os.sched_setaffinity(0, ours)
    if pid == 0:
        parent.close()
        os.close(go_w)
        ctx.guard_fd = go_r
        child_main(ctx, child, bootstrap)
    os.close(go_r)
    try:
        guard.spawn(pid, go_w, child)     # stage 1 waits until it is traced by the guard
    except BaseException:
        _kill_and_reap(pid)
        raise
    finally:
        os.close(go_w)
        child.close()
    # --debug: runc's words at the points that correspond (its bats suite and
    # people reading runc logs look for them): the stages now set up the
    # namespaces, as runc's nsexec does; the init exists in them and runs its
    # steps (runc: its Go init starts); the init reports ready (runc's init
    # closes its pipe; an exec'd process then execs).
    log.debug("=> nsexec container setup")
    if log.debugging():     # runc's nsexec logs it before the cgroup (cpu_affinity.bats reads it)
        log.debug(f"nsexec-0[{pid}]: affinity: {_mask(os.sched_getaffinity(pid)):#x}")
    if ctx.console_socket is not None:
        ctx.console_socket.close()
    init_pid = 0
    # Stage 1 and the init write to the same socket: the init's first requests
    # (an exec'd process has few steps) can overtake stage 1's INIT_PID.  They
    # wait here until the pid they are about is known.
    early: list[chan.Message] = []
    limits_set = ctx.mode != "init"   # exec joins, it sets nothing
    try:
        while True:
            if init_pid and early:
                msg = early.pop(0)
            else:
                try:
                    msg = parent.recv()
                except ChannelClosed:
                    raise PyrunError("container init exited before it was ready") from None
            if not init_pid and msg.type in _ABOUT_THE_INIT:
                early.append(msg)
                continue
            if msg.type == Msg.USERMAP_REQUEST:
                if ctx.trace_fd >= 0:
                    _trace(ctx, "write id maps", id_map_plan(ctx.linux))
                _write_id_maps(pid, ctx)
                parent.send(Msg.USERMAP_DONE)
            elif msg.type == Msg.BIND_SOURCES_REQUEST:
                _send_bind_sources(parent, pid, ctx)
            elif msg.type == Msg.INIT_PID:
                init_pid = msg.data["pid"]
                # Stage 1 joined the cgroup before it forked the init.
                _set_final_affinity(init_pid, affinity)
                log.debug("<= nsexec container setup")
                log.debug("child process in init()")
                if ctx.seccomp is not None:     # runc's words; its seccomp bats tests read them
                    log.debug(f"seccomp filter flags: {ctx.seccomp.flags}")   # as the init passes them to seccomp(2)
                _reap(pid)
                parent.send(Msg.REAPED)      # the init may arm its parent-death signal against us now
                ctx.cgroup.reap_warm()     # before any limit: it must not count in pids.max
                if ctx.linux.get("netDevices"):
                    from pyrun import netdev
                    netdev.move_devices(ctx.linux["netDevices"], init_pid)
            elif msg.type == Msg.MOUNT_SOURCE_REQUEST:
                _send_mount_source(parent, init_pid, ctx, msg)
            elif msg.type == Msg.HOOKS_REQUEST:
                if not limits_set:     # runc's procHooks: hooks see the limits
                    _apply_resources(ctx, "procHooks")
                    limits_set = True
                from pyrun.hooks import hook_state, hooks_of, run_hooks
                state = hook_state(ctx.spec, ctx.container_id, "creating", init_pid, ctx.bundle)
                if ctx.trace_fd >= 0:
                    _trace(ctx, "run prestart and createRuntime hooks", hooks_plan(ctx.spec))
                run_hooks("prestart", hooks_of(ctx.spec, "prestart"), state)
                run_hooks("createRuntime", hooks_of(ctx.spec, "createRuntime"), state)
                parent.send(Msg.HOOKS_DONE)
            elif msg.type == Msg.LIMITS_REQUEST:
                if not limits_set:     # runc 1.3+ writes them here (procHooks) for every container
                    _apply_resources(ctx, "procHooks")
                    limits_set = True
                parent.send(Msg.LIMITS_DONE)
            elif msg.type == Msg.RLIMITS_REQUEST:
                if ctx.trace_fd >= 0:
                    _trace(ctx, "prlimit the init", rlimits_plan(ctx.process))
                _apply_rlimits(init_pid, ctx)
                parent.send(Msg.RLIMITS_DONE)
            elif msg.type == Msg.SECCOMP_LISTENER:
                from pyrun.seccomp import notify
                fd = _copy_fd_from(init_pid, msg.data["fd"])
                try:
                    notify.send_to_agent(ctx, init_pid, fd)
                finally:
                    os.close(fd)
                parent.send(Msg.SECCOMP_DONE)
            elif msg.type == Msg.READY:
                log.debug("setns_init: about to exec" if ctx.mode == "exec"
                          else "init: closing the pipe to signal completion")
                if not limits_set:
                    _apply_resources(ctx, "procReady")
                return Launched(init_pid, parent)
            elif msg.type == Msg.FAULT:
                faults.die()
            elif msg.type == Msg.ERROR:
                step, text = msg.data.get("step"), msg.data.get("msg", "")
                raise init_failed(step, text) if step else PyrunError(text)
    except BaseException:
        ctx.cgroup.reap_warm()
        for victim in (init_pid, pid):
            if victim:
                _kill_and_reap(victim)
        parent.close()
        raise


def _exec_affinity(ctx: LaunchContext) -> dict[str, str]:
    """process.execCPUAffinity: for an exec'd process only (config.md)."""
    return (ctx.process.get("execCPUAffinity") or {}) if ctx.mode == "exec" else {}


def _cpus(text: str) -> set[int]:
    """A cpu list ("0-3,7") as a set; the schema checked its form."""
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _mask(cpus: set[int]) -> int:
    return sum(1 << c for c in cpus)


def _enter_initial_affinity(initial: str | None) -> set[int] | None:
    """Take the initial affinity ourselves so that stage 1 is born with it (it
    then holds it while it joins the cgroup); returns ours, to take back."""
    if not initial:
        return None
    ours = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, _cpus(initial))
    except OSError as e:
        raise PyrunError(f"error setting initial CPU affinity: {strerror(e.errno)}") from None
    return ours


# Every CPU the kernel may know: sched_setaffinity(2) clamps it to the CPUs
# that exist and to the task's cpuset, which is exactly the reset we want.
_ALL_CPUS = range(8192)


def _set_final_affinity(pid: int, affinity: dict[str, str]) -> None:
    """The process in its cgroup: execCPUAffinity.final, or, with no
    execCPUAffinity at all, every CPU its cpuset allows, so that a runtime
    started under `taskset` does not pass its own affinity on (runc 1.2+)."""
    if affinity.get("final"):
        try:
            os.sched_setaffinity(pid, _cpus(affinity["final"]))
        except OSError as e:
            raise PyrunError(f"error setting final CPU affinity: {strerror(e.errno)}") from None
    elif not affinity.get("initial"):
        try:
            os.sched_setaffinity(pid, _ALL_CPUS)
        except OSError as e:
            log.warning(f"resetting the CPU affinity of pid {pid} failed -- the container process "
                        f"may inherit the runtime's CPU affinity: sched_setaffinity: {strerror(e.errno)}")


def _send_mount_source(parent: Channel, init_pid: int, ctx: LaunchContext, msg: chan.Message) -> None:
    """An idmapped copy of the source inside the rootfs the init sent (rootfs/idmapped.py clone_inside)."""
    from pyrun.rootfs import idmapped
    index = msg.data["index"]
    if ctx.trace_fd >= 0:
        _trace(ctx, *mount_source_step(index))
    try:
        if len(msg.fds) != 1:
            raise PyrunError(f"mounts[{index}]: the init sent no mount source")
        tree = idmapped.clone_inside(init_pid, msg.fds[0], ctx.spec["mounts"][index], ctx.linux, index)
    finally:
        for fd in msg.fds:
            os.close(fd)
    try:
        parent.send(Msg.MOUNT_SOURCE, fds=[tree])
    finally:
        os.close(tree)


def _send_bind_sources(parent: Channel, pid: int, ctx: LaunchContext) -> None:
    """Open each bind source of a user-namespaced container (create.py
    _userns_binds) in stage 1's mount namespace, through its /proc/<pid>/root,
    with our (host root's) access, and hand stage 1 the O_PATH fds.  Symlinks
    resolve inside that root.  A source we cannot open is left to the init,
    which then reports the failure in its own words."""
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index in ctx.bind_source_indices:
            source = os.path.join(ctx.bundle, ctx.spec["mounts"][index]["source"])
            try:
                fd = s.openat2(root, source, os.O_PATH, s.RESOLVE_IN_ROOT | s.RESOLVE_NO_MAGICLINKS)
            except OSError:
                continue
            try:
                parent.send(Msg.BIND_SOURCE, fds=[fd], index=index)
            finally:
                os.close(fd)
    finally:
        os.close(root)
    parent.send(Msg.BIND_SOURCES_DONE)


def _write_id_maps(pid: int, ctx: LaunchContext) -> None:
    from pyrun import idmaps
    idmaps.write(pid, ctx.linux)


def _apply_rlimits(pid: int, ctx: LaunchContext) -> None:
    """From the host side, like runc: a user namespace cannot raise hard limits."""
    for rl in ctx.process.get("rlimits") or []:
        kind = rl["type"]
        try:
            resource.prlimit(pid, RLIMITS[kind], (_rlim(rl["soft"]), _rlim(rl["hard"])))
        except (OSError, ValueError, KeyError) as e:
            reason = strerror(e.errno) if isinstance(e, OSError) else str(e)
            raise PyrunError(f"error setting rlimit type {kind}: {reason}") from None


def _apply_resources(ctx: LaunchContext, when: str) -> None:
    """Limits go in once the cgroup holds only the init (stage 1 is reaped)
    and before it may exec: at the prestart/createRuntime hooks' request
    when there are such hooks (as runc), before `set scheduling` when there
    is a process.scheduler (the kernel judges it against the cpuset and the
    real-time budget, as under runc), otherwise at READY.  The runtime's
    own set-up is not charged against pids.max or a tiny memory limit; the
    user process is limited from its first instruction."""
    from pyrun.cgroups.manager import CgroupError, record_writes, stop_recording
    written = record_writes() if ctx.trace_fd >= 0 else None
    try:
        ctx.cgroup.update(ctx.linux.get("resources"))
    except CgroupError as e:
        raise PyrunError(f"error setting cgroup config for {when} process: {e}") from None
    finally:
        if written is not None:
            stop_recording()
            _trace(ctx, "write cgroup limits", [{"do": "write", "when": when, **w} for w in written])


def _trace(ctx: LaunchContext, step: str, actions: list) -> None:
    from pyrun import trace
    trace.emit(ctx.trace_fd, "parent", step, actions)


def id_map_plan(linux: dict) -> list[dict]:
    return [{"do": "write " + name, "mappings": linux.get(key) or []}
            for name, key in (("gid_map", "gidMappings"), ("uid_map", "uidMappings")) if linux.get(key)]


def hooks_plan(spec: dict) -> list[dict]:
    from pyrun.hooks import hooks_of
    return [{"do": f"run {kind} hook", "order": i, "namespace": "runtime", "path": h.get("path"),
             "args": h.get("args") or [], "timeout": h.get("timeout")}
            for kind in ("prestart", "createRuntime") for i, h in enumerate(hooks_of(spec, kind))]


def mount_source_step(index: int) -> tuple[str, list[dict]]:
    """The parent's step for mounts[index], an idmapped source inside the rootfs."""
    return (f"clone mounts[{index}]'s source",
            [{"do": "open_tree and idmap in the init's mount namespace", "index": index}])


def mount_source_steps(spec: dict, bundle: str, roots: tuple[str, ...]) -> list[tuple[str, list[dict]]]:
    """mount_source_step of every idmapped entry whose source is inside the rootfs."""
    from pyrun.rootfs.idmapped import wanted
    from pyrun.rootfs.mounts import container_source
    return [mount_source_step(i) for i, m in enumerate(spec.get("mounts") or [])
            if wanted(m) and container_source(m, bundle, roots) is not None]


def rlimits_plan(process: dict) -> list[dict]:
    return [{"do": "prlimit", "type": rl["type"], "soft": rl["soft"], "hard": rl["hard"]}
            for rl in process.get("rlimits") or []]


def _copy_fd_from(pid: int, fd: int) -> int:
    """pidfd_getfd(2): a copy of another process's fd, close-on-exec."""
    pidfd = os.pidfd_open(pid)
    try:
        return s.pidfd_getfd(pidfd, fd)
    except OSError as e:
        raise PyrunError(f"failed to get the seccomp listener fd from the init: {strerror(e.errno)}") from None
    finally:
        os.close(pidfd)


def _rlim(value: int) -> int:
    """uint64 from the config as the C long Python passes on (2**64-1 is RLIM_INFINITY)."""
    return value - 2**64 if value >= 2**63 else value


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)
