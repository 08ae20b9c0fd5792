"""The container init: stage 2, pid 1 of the new pid namespace.

STEPS below is the whole set-up, in order; read it top to bottom to know what
happens to a container before its process runs.  A failing step is reported
to `pyrun create` with the step's name, and the container is torn down.
"""
from __future__ import annotations

import errno
import os
import _signal as signal    # not signal: its enums cost ~1.5 ms
import stat
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Callable

from pyrun import faults
from pyrun.errors import START_FAILED, InitError, PyrunError, oserror_text, strerror
from pyrun.linux import procfs, syscalls as s
from pyrun.linux.capabilities import mask as cap_mask
from pyrun.process.channel import Channel, ChannelClosed, Msg
from pyrun.process.context import LaunchContext
from pyrun.rootfs import devices, restrict, switch
from pyrun.rootfs.mounts import dev_read_only, mount_entry
from pyrun.rootfs.options import PROPAGATION

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Init:
    """State carried from one step to the next."""

    def __init__(self, ctx: LaunchContext, ch: Channel) -> None:
        self.ctx = ctx
        self.ch: Channel | None = ch    # None once report_ready let `pyrun create` go
        self.root_fd = -1
        self.env: list[str] = []
        self.executable = ""
        self.null: restrict.NullSource | None = None
        self.own_proc = -1          # open_private_procfs: where exec.fifo is reopened
        self.last_cap = -1          # read_kernel_facts: the highest capability number
        self.setgroups_denied = False
        self.verdict_fd = -1        # wait_for_start: exec.fifo, open for writing while `start` reads


def die_with_parent(ch: Channel) -> None:
    """SIGKILL this stage when its parent dies: a killed `pyrun create` or
    `exec` must leave nothing behind, wherever a stage is blocked.  The
    kernel clears the setting on every change of uid or gid, so it is armed
    again after one.  Checked once armed: had the parent already died, its
    end of the channel is closed and no signal would come."""
    s.prctl(s.PR_SET_PDEATHSIG, signal.SIGKILL)
    if ch.peer_gone():
        os._exit(1)


# --- steps, in the order they run -------------------------------------------

def arm_parent_death(it: Init) -> None:
    """Die with `pyrun create`/`exec` until the state is recorded: stage 1,
    our first parent, exits normally, so we wait until the command has
    reaped it (it is then our parent, as our child subreaper) and arm the
    parent-death signal against it.  report_ready disarms it: the init
    outlives `pyrun create`."""
    it.ch.expect(Msg.REAPED)
    die_with_parent(it.ch)


def start_session(it: Init) -> None:
    """Own session (for a controlling tty), default signal handling, umask 0
    so that device and directory modes are exactly what the config says.
    An exec'd process stays in the caller's session unless it gets a tty."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    if it.ctx.mode == "init" or it.ctx.process.get("terminal"):
        os.setsid()
    os.umask(0)


def read_kernel_facts(it: Init) -> None:
    """What `switch user` needs from procfs, read now through the runtime's
    procfs fd: by then a seccomp profile may be loaded that allows no openat2
    (runtime-tools' and older Docker profiles do not list it)."""
    it.last_cap = procfs.last_cap(it.ctx.proc_fd)
    it.setgroups_denied = _setgroups_denied(it.ctx.proc_fd)


def join_session_keyring(it: Init) -> None:
    """runc's `_ses.<id>` keyring; --no-new-keyring keeps the caller's."""
    if not it.ctx.no_new_keyring:
        s.join_session_keyring("_ses." + it.ctx.container_id)


def set_up_network(it: Init) -> None:
    if "network" in it.ctx.new_namespaces:
        from pyrun.linux.loopback import loopback_up
        loopback_up()


def prepare_rootfs(it: Init) -> None:
    ctx = it.ctx
    if "mount" not in ctx.new_namespaces and "mount" not in ctx.join_namespaces:
        return
    propagation = ctx.linux.get("rootfsPropagation")
    flags = PROPAGATION[propagation] if propagation else s.MS_SLAVE | s.MS_REC
    s.mount(None, "/", None, flags)
    if propagation:
        switch.make_parent_mount_private(ctx.rootfs, ctx.proc_fd)
    s.mount(ctx.rootfs, ctx.rootfs, None, s.MS_BIND | s.MS_REC)
    # Opened after the self-bind: every later lookup starts at the new mount.
    it.root_fd = os.open(ctx.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    mounts = ctx.spec.get("mounts") or []
    try:
        for index, entry in enumerate(mounts):
            try:
                mount_entry(it.root_fd, entry, ctx.bundle, ctx.cgroup_binds,
                            detached=ctx.idmapped_mounts.get(index, -1))
            except OSError as e:
                raise OSError(e.errno, f"error mounting {entry.get('source', '')!r} to rootfs at "
                              f"{entry.get('destination')!r}: {oserror_text(e)}") from None
    finally:
        # Attached now: the created init keeps no handle on a host directory.
        for fd in ctx.idmapped_mounts.values():
            os.close(fd)
        ctx.idmapped_mounts = {}
    if devices.needs_dev_setup(mounts):
        configured = ctx.linux.get("devices") or []
        from pyrun.rootless import running_in_userns     # e.g. under rootless podman, as root of its userns
        devices.create_devices(it.root_fd, devices.DEFAULT_DEVICES + configured,
                               ctx.in_userns or running_in_userns())
        has_ptmx = any(d.get("path") == "/dev/ptmx" for d in configured)
        devices.create_symlinks(it.root_fd, has_ptmx)
        devices.ensure_shm_dir(it.root_fd)


def run_create_hooks(it: Init) -> None:
    """prestart and createRuntime by the parent (runtime namespace), then
    createContainer here, in the container's namespaces, before pivot_root."""
    spec = it.ctx.spec
    if not spec.get("hooks"):
        return
    from pyrun.hooks import hook_state, hooks_of, run_hooks
    if hooks_of(spec, "prestart") or hooks_of(spec, "createRuntime"):
        it.ch.send(Msg.HOOKS_REQUEST)
        it.ch.expect(Msg.HOOKS_DONE)
    if hooks_of(spec, "createContainer"):
        if it.root_fd >= 0:
            os.fchdir(it.root_fd)
        run_hooks("createContainer", hooks_of(spec, "createContainer"),
                  hook_state(spec, it.ctx.container_id, "creating", os.getpid(), it.ctx.bundle))


def hold_null_device(it: Init) -> None:
    """The host's /dev/null, taken while the host's files are still ours to
    see: maskedPaths never use whatever /dev/null the image has."""
    if it.ctx.linux.get("maskedPaths"):
        it.null = restrict.NullSource()


def open_private_procfs(it: Init) -> None:
    """A procfs of the container's pid namespace for the init alone, made while
    we still may: `wait for start` reopens exec.fifo through it, since the
    container's /proc may be a fake tree by then. Where the kernel refuses a
    new procfs (an older kernel; a user namespace nested in a container whose
    /proc is masked), the container's /proc is used, with the inode check."""
    try:
        it.own_proc = procfs.open_private()
    except OSError:
        it.own_proc = -1


def switch_root(it: Init) -> None:
    ctx = it.ctx
    if "mount" not in ctx.new_namespaces and "mount" not in ctx.join_namespaces:
        switch.chroot_only(ctx.rootfs)
    elif ctx.no_pivot:
        switch.move_and_chroot(ctx.rootfs, ctx.proc_fd)
    else:
        switch.pivot(ctx.rootfs)
    if it.root_fd >= 0:
        os.close(it.root_fd)
        it.root_fd = -1


def create_cwd(it: Init) -> None:
    cwd = it.ctx.process.get("cwd") or "/"
    os.makedirs(cwd, mode=0o755, exist_ok=True)


def set_up_console(it: Init) -> None:
    sock = it.ctx.console_socket
    if not it.ctx.process.get("terminal") or sock is None:
        return
    from pyrun.process import terminal     # preloaded
    master, slave = terminal.open_pty(it.ctx.process.get("consoleSize"))
    # The process's own console, as runc: its user owns the pty (the group
    # stays devpts' gid=5), else a non-root process cannot reopen it
    # (/dev/stdin, `tty`, ssh-style password prompts).
    uid = int((it.ctx.process.get("user") or {}).get("uid", 0))
    if uid:
        try:
            os.fchown(slave, uid, -1)
        except OSError as e:
            # As runc: an unmapped uid (EINVAL), an owner we may not change
            # in a user namespace (EPERM), a read-only /dev: leave it be.
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise
    if it.ctx.mode == "init":      # as runc: an exec'd process mounts nothing
        terminal.mount_console(slave)
    terminal.send_master(sock, master)
    os.close(master)
    sock.close()
    # The pty replaces our stdio now, not at exec: the caller (containerd's
    # shim) reads create's output to EOF, and must not wait for `start`.
    terminal.make_controlling(slave)


def finalize_rootfs(it: Init) -> None:
    """Without a mount namespace of its own the container's / is a directory
    of the host's (chroot), no mount to remount: as runc, which finalizes the
    rootfs only in a mount namespace, root.readonly is then not applied."""
    _reopen_null_stdio()
    ctx = it.ctx
    if "mount" not in ctx.new_namespaces and "mount" not in ctx.join_namespaces:
        return
    root = ctx.spec.get("root") or {}
    if root.get("readonly"):
        switch.remount_root_readonly()
    if dev_read_only(ctx.spec.get("mounts") or []):
        switch.remount_root_readonly("/dev")


_NULL_RDEV = os.makedev(1, 3)


def _reopen_null_stdio() -> None:
    """runc's reOpenDevNull: stdio left on the host's /dev/null (podman's
    conmon gives it as stdin) is reopened as the container's own /dev/null.
    CRIU resolves every open file through the container's mounts and cannot
    checkpoint a file of a mount it does not see. The container's /dev/null
    must itself be the 1:3 device, reached without following a symlink;
    otherwise the host's stays (no worse than before)."""
    null = -1
    try:
        for fd in (0, 1, 2):
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != _NULL_RDEV:
                continue
            if null < 0:
                try:
                    null = os.open("/dev/null", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError:
                    return
                own = os.fstat(null)
                if not stat.S_ISCHR(own.st_mode) or own.st_rdev != _NULL_RDEV:
                    return
            if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != (os.fstat(null).st_dev, os.fstat(null).st_ino):
                os.dup2(null, fd)
    finally:
        if null >= 0:
            os.close(null)


def set_hostname(it: Init) -> None:
    hostname = it.ctx.spec.get("hostname")
    if hostname:
        import _socket
        _socket.sethostname(hostname)
    domainname = it.ctx.spec.get("domainname")
    if domainname:
        s.setdomainname(domainname)


def apply_sysctls(it: Init) -> None:
    """Through the runtime's procfs fd: the container's /proc/sys may be a
    fake tree, and the write would land in a host file behind it."""
    for key, value in (it.ctx.linux.get("sysctl") or {}).items():
        try:
            procfs.write(it.ctx.proc_fd, "sys/" + key.replace(".", "/"), str(value))
        except OSError as e:
            raise OSError(e.errno, f"failed to set sysctl {key}={value}: {oserror_text(e)}") from None


def restrict_paths(it: Init) -> None:
    for path in it.ctx.linux.get("readonlyPaths") or []:
        restrict.readonly(path)
    null = it.null
    if null is None:
        return
    try:
        for path in it.ctx.linux.get("maskedPaths") or []:
            restrict.mask(path, null)
    finally:
        null.close()
        it.null = None


def set_rootfs_propagation(it: Init) -> None:
    """rootfsPropagation is the container's root mount's own: set on `/`
    once it is the root, and last, after every bind of the set-up (an
    unbindable root could be the source of none). Before the switch it only
    governed the host side, as in runc, whose container root stays private."""
    propagation = it.ctx.linux.get("rootfsPropagation")
    if propagation and ("mount" in it.ctx.new_namespaces or "mount" in it.ctx.join_namespaces):
        s.mount(None, "/", None, PROPAGATION[propagation])


def apply_lsm_labels(it: Init) -> None:
    """AppArmor profile / SELinux exec label for the process (checked at create)."""
    proc = it.ctx.process
    if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
        from pyrun import lsm
        lsm.apply(proc, it.ctx.proc_fd)


def set_no_new_privileges(it: Init) -> None:
    if it.ctx.process.get("noNewPrivileges"):
        s.prctl(s.PR_SET_NO_NEW_PRIVS, 1)


def set_scheduling(it: Init) -> None:
    """process.scheduler (sched_setattr) and process.ioPriority (ioprio_set)."""
    proc = it.ctx.process
    if proc.get("scheduler") or proc.get("ioPriority"):
        from pyrun.linux import sched
        sched.apply(proc)


def set_memory_policy(it: Init) -> None:
    policy = it.ctx.linux.get("memoryPolicy")
    if policy:
        from pyrun.linux import mempolicy
        mempolicy.apply(policy)


def _load_seccomp(it: Init) -> None:
    """A NOTIFY filter's listener fd goes to the agent at listenerPath. Until
    the agent holds it, a notified syscall would hang us, so the fd number is
    announced with a bare write(2) (which no profile may notify on) and the
    parent copies the fd out of us with pidfd_getfd, as runc does."""
    from pyrun import seccomp
    listener = seccomp.load(it.ctx.seccomp)
    if listener >= 0:
        it.ch.write(Msg.SECCOMP_LISTENER, fd=listener)
        it.ch.expect(Msg.SECCOMP_DONE)
        os.close(listener)


def load_seccomp_before_user_switch(it: Init) -> None:
    """Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
    while we still have it (runc does the same)."""
    if it.ctx.seccomp is not None and not it.ctx.process.get("noNewPrivileges"):
        _load_seccomp(it)


def load_seccomp_late(it: Init) -> None:
    """With no_new_privs, as late as possible: little Python runs under the filter."""
    if it.ctx.seccomp is not None and it.ctx.process.get("noNewPrivileges"):
        _load_seccomp(it)


def set_personality(it: Init) -> None:
    persona = it.ctx.linux.get("personality")
    if persona:
        from pyrun.linux import personality
        personality.apply(persona)


def prepare_environment(it: Init) -> None:
    env = list(it.ctx.process.get("env") or []) + it.ctx.extra_env
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + _home_of(int((it.ctx.process.get("user") or {}).get("uid", 0))))
    it.env = env


def apply_rlimits(it: Init) -> None:
    """The parent sets them with prlimit while we are still root: after the
    user switch it could no longer (runc's procReady/procRun)."""
    if it.ctx.process.get("rlimits"):
        it.ch.send(Msg.RLIMITS_REQUEST)
        it.ch.expect(Msg.RLIMITS_DONE)


def switch_user(it: Init) -> None:
    """runc's finalizeNamespace: bounding set, keep caps across setuid, drop
    to the configured user, then the final capability sets."""
    proc = it.ctx.process
    user = proc.get("user") or {}
    caps = proc.get("capabilities")
    # Never the container's /proc/sys/kernel: a fake cap_last_cap of 31
    # would leave CAP_SYSLOG, CAP_BPF... in the bounding set.
    last = it.last_cap
    if caps is not None:
        try:
            masks = {k: cap_mask(caps.get(k) or [], last)
                     for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
        except ValueError as e:
            raise InitError("switch user", str(e)) from None
        for cap in range(last + 1):
            if not masks["bounding"] & (1 << cap):
                s.prctl(s.PR_CAPBSET_DROP, cap)
        s.prctl(s.PR_SET_KEEPCAPS, 1)
    # As runc: chdir while we are still root, so a cwd the runtime may enter
    # but the user may not works; where root may not (a directory of an
    # unmapped owner, NFS root squash), again as the user.
    cwd = proc.get("cwd") or "/"
    chdir_later = not _chdir(cwd, still_root=True)
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    groups = [int(g) for g in user.get("additionalGids") or []]
    if not it.setgroups_denied:
        os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    die_with_parent(it.ch)          # the kernel cleared it with the uid/gid change
    if caps is not None:
        s.prctl(s.PR_SET_KEEPCAPS, 0)
        s.capset(masks["effective"], masks["permitted"], masks["inheritable"])
        for cap in range(last + 1):
            if masks["ambient"] & (1 << cap):
                s.prctl(s.PR_CAP_AMBIENT, s.PR_CAP_AMBIENT_RAISE, cap)
    umask = user.get("umask")
    os.umask(0o022 if umask is None else int(umask))
    if chdir_later:
        _chdir(cwd, still_root=False)
    # CVE-2024-21626: a leaked host directory as cwd shows up as unreachable.
    try:
        inside = os.getcwd().startswith("/")
    except FileNotFoundError:
        inside = False
    if not inside:
        raise InitError("switch user", "current working directory is outside of container mount "
                        "namespace root -- possible container breakout detected")


def _chdir(cwd: str, still_root: bool) -> bool:
    """chdir(cwd); False if only permission was lacking and we are still root."""
    try:
        os.chdir(cwd)
    except OSError as e:
        if still_root and e.errno == errno.EACCES:
            return False
        raise OSError(e.errno, f'chdir to cwd ("{cwd}") set in config.json failed: {strerror(e.errno)}') from None
    return True


def look_up_executable(it: Init) -> None:
    """Go's exec.LookPath wording, which Docker and podman map to 126/127."""
    args = it.ctx.process.get("args") or []
    if not args:
        raise InitError("look up executable", "args must not be empty")
    name = args[0]
    if "/" in name:
        candidates = [name]
    else:
        path = next((e[5:] for e in it.env if e.startswith("PATH=")), None)
        if path is None:
            path = DEFAULT_PATH
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError as e:
            if "/" in name:
                raise InitError("look up executable",
                                f'exec: "{name}": stat {name}: {strerror(e.errno)}') from None
            continue
        if not stat.S_ISDIR(st.st_mode) and st.st_mode & 0o111:
            it.executable = candidate
            return
        if "/" in name:
            raise InitError("look up executable", f'exec: "{name}": permission denied')
    raise InitError("look up executable", f'exec: "{name}": executable file not found in $PATH')


def mark_fds_cloexec(it: Init) -> None:
    """Nothing but stdio and the preserved fds may cross into the container
    (CVE-2024-21626). Done before the container's seccomp filter, which may
    list neither close_range nor openat2 (runtime-tools' default profile);
    where close_range is refused anyway (an older kernel, a filter pyrun
    itself runs under) fd by fd, as runc does. Every fd opened after this
    is Python's, and so close-on-exec."""
    procfs.cloexec_from(it.ctx.proc_fd, 3 + it.ctx.preserve_fds)


def report_ready(it: Init) -> None:
    """The parent records state and writes the pid file; if it died, so do we.
    The parent-death signal is disarmed first: the parent exits normally
    after ACK, and its death before ACK closes the channel, which ends us."""
    s.prctl(s.PR_SET_PDEATHSIG, 0)
    # Nothing of the host's /proc stays open while we wait for `start`.
    if it.ctx.proc_fd >= 0:
        os.close(it.ctx.proc_fd)
        it.ctx.proc_fd = -1
    it.ch.send(Msg.READY)
    try:
        it.ch.expect(Msg.ACK)
    except (ChannelClosed, OSError):
        os._exit(1)
    if it.ctx.mode == "init":
        # `pyrun create` exits now; `start` hears from us through exec.fifo.
        # An exec'd process keeps the channel (close-on-exec) until execve:
        # `pyrun exec` reads it to EOF, so a failure of `exec` reaches it.
        it.ch.close()
        it.ch = None


def _die_on_signal(sig: int, _frame: object) -> None:
    os._exit(128 + sig)


def wait_for_start(it: Init) -> None:
    """Block until `pyrun start` reads exec.fifo.

    As pid 1 we would ignore signals we have no handler for; `kill` of a
    created container must end it, as it ends runc's init."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, _die_on_signal)
    # `start` was called and reads the fifo to EOF. The fd is close-on-exec:
    # `exec` writes "0" just before execve, which closes it; a failing step
    # writes "1" and its error instead (run() below), which `start` reports.
    it.verdict_fd = _reopen_exec_fifo(it.ctx.fifo_fd, it.own_proc)
    hooks = (it.ctx.spec.get("hooks") or {}).get("startContainer")
    if hooks:
        from pyrun.hooks import hook_state, run_hooks
        run_hooks("startContainer", hooks,
                  hook_state(it.ctx.spec, it.ctx.container_id, "created", os.getpid(), it.ctx.bundle))


def _reopen_exec_fifo(path_fd: int, own_proc: int) -> int:
    """The init holds only an O_PATH fd on exec.fifo, nothing that leads to
    the host's directories (CVE-2024-21626 class); like runc, it opens the
    fifo for writing through /proc/self/fd, which blocks until `start`: our
    private procfs where we have one, else the container's /proc. Either
    way the fd must be the very fifo we were given."""
    rel = f"self/fd/{path_fd}"
    path = "/proc/" + rel
    try:
        if own_proc >= 0:
            fd = os.open(rel, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=own_proc)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise InitError("wait for start", f"open exec fifo {path}: {strerror(e.errno)}") from None
    finally:
        if own_proc >= 0:
            os.close(own_proc)
    want, got = os.fstat(path_fd), os.fstat(fd)
    os.close(path_fd)
    if (got.st_dev, got.st_ino) != (want.st_dev, want.st_ino):
        os.close(fd)
        raise InitError("wait for start", f"open exec fifo {path}: not the container's exec.fifo")
    return fd


def exec_process(it: Init) -> None:
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # Every other fd is close-on-exec already (mark_fds_cloexec).
    for fd in range(3, 3 + it.ctx.preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    args = it.ctx.process.get("args") or []
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in it.env)
    if it.verdict_fd >= 0:
        os.write(it.verdict_fd, b"0")
    try:
        os.execve(it.executable, args, env)
    except OSError as e:
        raise OSError(e.errno, f"exec {it.executable}: {strerror(e.errno)}") from None


STEPS: list[tuple[str, Callable[[Init], None]]] = [
    ("arm parent death signal", arm_parent_death),
    ("start session", start_session),
    ("read kernel facts", read_kernel_facts),
    ("join session keyring", join_session_keyring),
    ("set up network", set_up_network),
    ("prepare rootfs", prepare_rootfs),
    ("run create hooks", run_create_hooks),
    ("hold /dev/null for masks", hold_null_device),
    ("open private procfs", open_private_procfs),
    ("switch root", switch_root),
    ("create cwd", create_cwd),
    ("set up console", set_up_console),
    ("finalize rootfs", finalize_rootfs),
    ("set hostname", set_hostname),
    ("apply sysctls", apply_sysctls),
    ("restrict paths", restrict_paths),
    ("set rootfs propagation", set_rootfs_propagation),
    ("apply LSM labels", apply_lsm_labels),
    ("set no_new_privs", set_no_new_privileges),
    ("set scheduling", set_scheduling),
    ("set memory policy", set_memory_policy),
    ("prepare environment", prepare_environment),
    ("apply rlimits", apply_rlimits),
    ("mark fds close-on-exec", mark_fds_cloexec),
    ("load seccomp (no_new_privs off)", load_seccomp_before_user_switch),
    ("switch user", switch_user),
    ("look up executable", look_up_executable),
    ("load seccomp (no_new_privs on)", load_seccomp_late),
    ("set personality", set_personality),
    ("report ready", report_ready),
    ("wait for start", wait_for_start),
    ("exec", exec_process),
]


# `exec`: the process joins the container's namespaces (stage 1 did that) and
# gets the same confinement as the init, in the same order, minus the rootfs.
EXEC_STEPS: list[tuple[str, Callable[[Init], None]]] = [
    (name, step) for name, step in STEPS
    if step not in (set_up_network, prepare_rootfs, run_create_hooks, hold_null_device, open_private_procfs,
                    switch_root, create_cwd,
                    finalize_rootfs, set_hostname, apply_sysctls, restrict_paths, set_rootfs_propagation,
                    wait_for_start)
]


def preload(ctx: LaunchContext) -> None:
    """Import now what the steps import lazily: once a stage has joined the
    container's mount namespace (or pivoted), the host's files are gone."""
    proc, linux = ctx.process, ctx.linux
    wanted = {
        "pyrun.linux.loopback": "network" in ctx.new_namespaces,
        "pyrun.process.terminal": bool(proc.get("terminal")),
        "pyrun.lsm": bool(proc.get("apparmorProfile") or proc.get("selinuxLabel")),
        "pyrun.linux.sched": bool(proc.get("scheduler") or proc.get("ioPriority")),
        "pyrun.linux.mempolicy": bool(linux.get("memoryPolicy")),
        "pyrun.seccomp": ctx.seccomp is not None,
        "pyrun.linux.personality": bool(linux.get("personality")),
        "pyrun.hooks": bool(ctx.spec.get("hooks")),
        "subprocess": bool(ctx.spec.get("hooks")),
    }
    for name, needed in wanted.items():
        if needed:
            __import__(name)     # not importlib: one module less to import


def run(ctx: LaunchContext, ch: Channel) -> None:
    it = Init(ctx, ch)
    for name, step in (EXEC_STEPS if ctx.mode == "exec" else STEPS):
        if it.ch is not None:
            faults.step(name, ch)
        try:
            try:
                step(it)
            except InitError:
                raise
            except OSError as e:
                raise InitError(name, oserror_text(e)) from None
            except (ValueError, OverflowError, PyrunError) as e:   # a value no syscall takes; a failing hook
                raise InitError(name, str(e)) from None
            except MemoryError:      # e.g. RLIMIT_AS, applied while we are still Python
                raise InitError(name, "cannot allocate memory") from None
        except InitError as e:
            if it.ch is None:
                _last_word(it, e)
            raise


def _last_word(it: Init, e: InitError) -> None:
    """A step failed after `pyrun create` left: no init failure may be
    silent. `start` is reading exec.fifo once we hold it open for writing
    and reports what we write there; before that (the reopen itself
    failed), only our stderr is left, as current runc's init prints its
    error there as a last resort. `start` then finds us dead."""
    text = f"{e.step}: {str(e).split(': ', 1)[1]}"
    try:
        if it.verdict_fd >= 0:
            os.write(it.verdict_fd, b"1" + text.encode(errors="replace")[:4000])
        else:
            os.write(2, f"{START_FAILED}: error during container init: {text}\n".encode(errors="replace"))
    except OSError:
        pass
    os._exit(255)


# Bytes of the container's /etc/passwd read for HOME at most: a real one is a
# few KiB (tens of thousands of users fit), and the init has no limits yet.
PASSWD_MAX = 4 << 20


def _home_of(uid: int) -> str:
    """HOME from the container's /etc/passwd, or "/" when it gives none.

    The file is the image's (or, for exec, whatever the running container
    made of it), so it is read as hostile: resolved inside the container's
    root without magic links (/proc/self/exe, /proc/self/fd/N are host
    files), opened without blocking (a FIFO would hang us), used only if it
    is a regular file (not /dev/zero, a tty, a socket) and read only up to
    its size at open, capped at PASSWD_MAX (a file that grows, or procfs).
    Anything else gives "/", runc's default (current runc falls back so too)."""
    try:
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = s.openat2(root, "etc/passwd", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY,
                           s.RESOLVE_IN_ROOT | s.RESOLVE_NO_MAGICLINKS)
        finally:
            os.close(root)
        try:
            st = os.fstat(fd)
            data = os.read(fd, min(st.st_size, PASSWD_MAX)) if stat.S_ISREG(st.st_mode) else b""
        finally:
            os.close(fd)
    except OSError:
        return "/"
    want = str(uid).encode()
    for line in data.split(b"\n"):
        fields = line.split(b":")
        if len(fields) >= 6 and fields[2] == want:
            return fields[5].decode("utf-8", "surrogateescape") or "/"
    return "/"


def _setgroups_denied(proc_fd: int) -> bool:
    """A fake "deny" in the container's /proc/self would keep the caller's
    supplementary groups: read our own through the runtime's procfs."""
    try:
        return procfs.read(proc_fd, "self/setgroups").strip() == "deny"
    except FileNotFoundError:
        return False
