"""The guard: pyrun's own processes in a container are traced by us, so by no one else.

A container process with CAP_SYS_PTRACE in the host's user namespace passes
every check of ptrace(2) on a process in its pid namespace; non-dumpable does
not stop it (CVE-2016-9962 class).  What the kernel does enforce is one
tracer per task.  So a small process outside the container, the guard,
PTRACE_SEIZEs stage 1 before stage 1 joins any namespace (stage 1 lives in
the caller's pid namespace and waits on a pipe until the guard says it holds
it), with PTRACE_O_TRACEFORK/VFORK/CLONE: the kernel makes every process
stage 1 forks (the init, or the process of `exec`) and everything those fork
(hook children) the guard's tracee in the same step that makes it visible, so
no one can seize them first; stage 1 itself is let go once it has forked.
A fault nothing catches (SIGSEGV...) gets SIGKILL from the guard: the kernel
keeps a traced pid 1 unkillable by its own faults, and it would spin.
At PTRACE_EVENT_EXEC, when pyrun's code gives way
to the container's program, the guard detaches: that program runs untraced.
In between it only resumes its tracees, passing every signal on as it came
(group-stops are kept with PTRACE_LISTEN), so signals, `kill`, SIGSTOP and
SIGCONT behave as without it.  With PTRACE_O_EXITKILL a guard that dies
takes its tracees with it: never one of ours left untraced.

The guard is forked by the `create`/`exec` command, starts its own session
and closes every fd (a caller reading the command's output to its end, such
as containerd's shim, must not wait for it), stays outside the container's
cgroup, and exits when it has no tracee left: the init has exec'd or died.
It is not the real parent of anything it traces: the kernel reports an
exit to the tracer first, then to the real parent (the command, the shim).
"""
from __future__ import annotations

import os
import _signal as signal    # not signal: its enums cost ~1.5 ms

from pyrun.linux import syscalls as s
from pyrun.process.channel import Channel, Msg

STEP = "guard against ptrace"
OPTIONS = (s.PTRACE_O_TRACEFORK | s.PTRACE_O_TRACEVFORK | s.PTRACE_O_TRACECLONE
           | s.PTRACE_O_TRACEEXEC | s.PTRACE_O_EXITKILL)
_WALL = 0x40000000          # __WALL: every tracee, however it was cloned
_GROUP_STOPS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_FAULTS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGSYS, signal.SIGTRAP})
GO = b"g"


def spawn(stage1: int, go: int, report: Channel) -> None:
    """Fork the guard of `stage1`.  `go`: the write end of the pipe stage 1
    waits on; `report`: stage 1's end of the channel, where a failure is
    told to the command as a failing stage's own error would be."""
    if os.fork() == 0:
        code = 1
        try:
            code = _guard(stage1, go, report)
        finally:
            os._exit(code)


def _guard(stage1: int, go: int, report: Channel) -> int:
    import sys
    sys.stdout = sys.stderr = None  # type: ignore[assignment]
    try:
        s.ptrace(s.PTRACE_SEIZE, stage1, OPTIONS)     # first: stage 1 waits for it
    except OSError as e:
        # Someone traces it already (or we may not): it must not go on.
        _kill(stage1)
        from pyrun.errors import strerror
        try:
            report.send(Msg.ERROR, step=STEP,
                        msg=f"cannot trace the runtime's stage 1 (pid {stage1}): {strerror(e.errno)}")
        except OSError:
            pass
        return 1
    os.write(go, GO)
    # Then leave the command's session and every fd it had (its stdio, its lock).
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    os.closerange(0, 1 << 20)
    _set_name(b"pyrun-guard")
    hold(stage1)
    return 0


def _set_name(name: bytes) -> None:
    """Our comm, for `ps`: we are a fork of the command and show its name otherwise."""
    import ctypes
    buf = ctypes.create_string_buffer(name)
    try:
        s.prctl(s.PR_SET_NAME, ctypes.addressof(buf))
    except OSError:
        pass


def hold(stage1: int) -> None:
    """Resume every stop of our tracees until none is left.  Stage 1 is let
    go once it has forked (its child is ours already): it lives in the
    caller's pid namespace, and its exit then needs no turn of ours before
    the command can reap it."""
    while True:
        try:
            pid, status = os.waitpid(-1, _WALL)
        except ChildProcessError:
            return          # no tracee left
        if not os.WIFSTOPPED(status):
            continue        # it exited; the kernel now tells its real parent
        sig, event = os.WSTOPSIG(status), status >> 16
        try:
            if event == s.PTRACE_EVENT_EXEC:
                s.ptrace(s.PTRACE_DETACH, pid)      # the container's program: not ours to hold
            elif event == s.PTRACE_EVENT_STOP:
                # A group-stop (SIGSTOP...) stays a stop until SIGCONT; any
                # other (a new tracee's first stop) is resumed.
                s.ptrace(s.PTRACE_LISTEN if sig in _GROUP_STOPS else s.PTRACE_CONT, pid)
            elif event:                             # fork/vfork/clone: the child is ours already
                s.ptrace(s.PTRACE_DETACH if pid == stage1 else s.PTRACE_CONT, pid)
            elif sig in _FAULTS and _fatal_fault(pid, sig):
                # Untraced, it would die of it, even as pid 1 of its namespace:
                # the kernel leaves a traced init unkillable by its own faults,
                # and it would fault again forever.
                _kill(pid)
            else:
                s.ptrace(s.PTRACE_CONT, pid, sig)   # a signal for it: deliver it as it came
        except ProcessLookupError:
            pass            # killed meanwhile


def _fatal_fault(pid: int, sig: int) -> bool:
    """The kernel raised `sig` (a fault, a seccomp trap) and nothing catches it."""
    if s.ptrace_si_code(pid) <= 0:
        return False
    with open(f"/proc/{pid}/status") as f:
        caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return not caught >> (sig - 1) & 1


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for_guard(go: int) -> None:
    """Stage 1, before it joins anything: block until the guard traces us.
    Yama's ptrace_scope 1 lets only ancestors trace: name our parent, the
    guard's parent too."""
    try:
        s.prctl(s.PR_SET_PTRACER, os.getppid())
    except OSError:
        pass        # no Yama
    try:
        got = os.read(go, 1)
    finally:
        os.close(go)
    if got != GO:
        from pyrun.errors import InitError
        raise InitError(STEP, "the guard exited before it traced the runtime's stages")
