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
    from typing import Any, Callable

from pyrun import faults
from pyrun.errors import START_FAILED, InitError, PyrunError, init_failed_text, oserror_text, strerror
from pyrun.linux import procfs, syscalls as s
from pyrun.linux.capabilities import mask as cap_mask
from pyrun.process.channel import Channel, ChannelClosed, Msg
from pyrun.process.context import LaunchContext
from pyrun.rootfs import devices, restrict, switch
from pyrun.rootfs.mounts import container_source, dev_read_only, mount_entry
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
        self.actions: list[dict[str, Any]] = []   # the running step's plan (PLANS), what it performs
        # Plans carry, besides what the step uses, words for people (mount flag
        # names, capability names): only for `explain` and PYRUN_TRACE, as
        # they cost create ~0.4 ms.
        self.detail = ctx.trace_fd >= 0
        self.verdict_fd = -1        # wait_for_start: exec.fifo, open for writing while `start` reads
        self.pty: tuple[int, int] | None = None   # open_pty_before_chroot: (master, slave)


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
    if _planned(it, "setsid"):
        os.setsid()
    os.umask(0)


def plan_start_session(it: Init) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"do": "default signal dispositions", "signals": ["INT", "TERM", "PIPE", "XFSZ", "CHLD"]}]
    if it.ctx.mode == "init" or it.ctx.process.get("terminal"):
        out.append({"do": "setsid"})
    return out + [{"do": "umask", "mask": "0000"}]


def read_kernel_facts(it: Init) -> None:
    """What `switch user` needs from procfs, read now through the runtime's
    procfs fd: by then a seccomp profile may be loaded that allows no openat2
    (runtime-tools' and older Docker profiles do not list it)."""
    it.last_cap = procfs.last_cap(it.ctx.proc_fd)
    it.setgroups_denied = _setgroups_denied(it.ctx.proc_fd)


def join_session_keyring(it: Init) -> None:
    """runc's `_ses.<id>` keyring; --no-new-keyring keeps the caller's."""
    s.join_session_keyring(it.actions[0]["name"])


def plan_join_session_keyring(it: Init) -> list[dict[str, Any]]:
    return [] if it.ctx.no_new_keyring else [{"do": "join session keyring", "name": "_ses." + it.ctx.container_id}]


def set_up_network(it: Init) -> None:
    from pyrun.linux.loopback import loopback_up
    loopback_up()


def plan_set_up_network(it: Init) -> list[dict[str, Any]]:
    return [{"do": "bring loopback up"}] if "network" in it.ctx.new_namespaces else []


def prepare_rootfs(it: Init) -> None:
    ctx = it.ctx
    try:
        for act in it.actions:
            do = act["do"]
            if do == "set propagation of /":
                s.mount(None, "/", None, act["flags"])
            elif do == "make the rootfs's parent mount private":
                switch.make_parent_mount_private(ctx.rootfs, ctx.proc_fd)
            elif do == "bind rootfs on itself":
                s.mount(ctx.rootfs, ctx.rootfs, None, s.MS_BIND | s.MS_REC)
                # Opened after the self-bind: every later lookup starts at the new mount.
                it.root_fd = os.open(ctx.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            elif do == "mount":
                _mount(it, act["index"])
            elif do == "create devices":
                devices.create_devices(it.root_fd, act["devices"], act["bind_from_host"])
            elif do == "create /dev symlinks":
                devices.create_symlinks(it.root_fd, act["ptmx_device"])
                devices.ensure_shm_dir(it.root_fd)
    finally:
        # Attached now: the created init keeps no handle on a host directory.
        for fd in [*ctx.idmapped_mounts.values(), *ctx.bind_sources.values()]:
            os.close(fd)
        ctx.idmapped_mounts = {}
        ctx.bind_sources = {}


def _mount(it: Init, index: int) -> None:
    ctx = it.ctx
    entry = ctx.spec["mounts"][index]
    roots = ctx.rootfs_names
    detached = ctx.idmapped_mounts.get(index, -1)
    fetched = -1
    try:
        inside = container_source(entry, ctx.bundle, roots)
        if inside is not None and detached < 0:
            from pyrun.rootfs.idmapped import wanted
            if wanted(entry):
                fetched = detached = _idmapped_inside(it, index, inside)
        mount_entry(it.root_fd, entry, ctx.bundle, ctx.cgroup_binds, detached=detached, roots=roots,
                    source_fd=ctx.bind_sources.get(index, -1))
    except OSError as e:
        raise OSError(e.errno, f"error mounting {entry.get('source', '')!r} to rootfs at "
                      f"{entry.get('destination')!r}: {oserror_text(e)}") from None
    finally:
        if fetched >= 0:
            os.close(fetched)


def _idmapped_inside(it: Init, index: int, inside: str) -> int:
    """An idmapped source inside the container, as the entries before it left
    it: looked up here, in the root; cloned and mapped by the parent, root
    over the source's filesystem (rootfs/idmapped.py clone_inside)."""
    from pyrun.rootfs.paths import open_in_root
    src = open_in_root(it.root_fd, inside)
    try:
        it.ch.send(Msg.MOUNT_SOURCE_REQUEST, fds=[src], index=index)
    finally:
        os.close(src)
    return it.ch.expect(Msg.MOUNT_SOURCE).fds[0]


def plan_prepare_rootfs(it: Init) -> list[dict[str, Any]]:
    ctx = it.ctx
    if "mount" not in ctx.new_namespaces and "mount" not in ctx.join_namespaces:
        return []
    propagation = ctx.linux.get("rootfsPropagation")
    out: list[dict[str, Any]] = [
        {"do": "set propagation of /", "propagation": propagation or "rslave",
         "flags": PROPAGATION[propagation] if propagation else s.MS_SLAVE | s.MS_REC}]
    if propagation:
        out.append({"do": "make the rootfs's parent mount private", "if": "it is shared or unbindable"})
    out.append({"do": "bind rootfs on itself", "path": ctx.rootfs})
    from pyrun.rootfs.mounts import describe
    mounts = ctx.spec.get("mounts") or []
    for i, entry in enumerate(mounts):
        if it.detail:
            out.append({**describe(entry, ctx.bundle, ctx.cgroup_binds, ctx.idmapped_mounts.get(i, -1),
                                   ctx.rootfs_names), "index": i})
        else:
            out.append({"do": "mount", "index": i})
    if devices.needs_dev_setup(mounts):
        configured = ctx.linux.get("devices") or []
        from pyrun.rootless import running_in_userns     # e.g. under rootless podman, as root of its userns
        out.append({"do": "create devices", "devices": devices.DEFAULT_DEVICES + configured,
                    "bind_from_host": ctx.in_userns or running_in_userns()})
        out.append({"do": "create /dev symlinks",
                    "ptmx_device": any(d.get("path") == "/dev/ptmx" for d in configured),
                    "links": [link for _target, link in devices.DEV_SYMLINKS] + ["/dev/ptmx", "/dev/shm"]})
    return out


def run_create_hooks(it: Init) -> None:
    """prestart and createRuntime by the parent (runtime namespace), then
    createContainer here, in the container's namespaces, before pivot_root."""
    spec = it.ctx.spec
    from pyrun.hooks import hook_state, run_hooks
    for act in it.actions:
        if act["do"] == "ask the parent to run hooks":
            it.ch.send(Msg.HOOKS_REQUEST)
            it.ch.expect(Msg.HOOKS_DONE)
        else:
            if it.root_fd >= 0:
                os.fchdir(it.root_fd)
            run_hooks("createContainer", act["hooks"],
                      hook_state(spec, it.ctx.container_id, "creating", os.getpid(), it.ctx.bundle))


def plan_run_create_hooks(it: Init) -> list[dict[str, Any]]:
    spec = it.ctx.spec
    if not spec.get("hooks"):
        return []
    from pyrun.hooks import hooks_of
    out: list[dict[str, Any]] = []
    if hooks_of(spec, "prestart") or hooks_of(spec, "createRuntime"):
        out.append({"do": "ask the parent to run hooks", "namespace": "runtime",
                    "prestart": hooks_of(spec, "prestart"), "createRuntime": hooks_of(spec, "createRuntime")})
    if hooks_of(spec, "createContainer"):
        out.append({"do": "run createContainer hooks", "namespace": "container",
                    "hooks": hooks_of(spec, "createContainer")})
    return out


def hold_null_device(it: Init) -> None:
    """The host's /dev/null, taken while the host's files are still ours to
    see: maskedPaths never use whatever /dev/null the image has."""
    it.null = restrict.NullSource()


def plan_hold_null_device(it: Init) -> list[dict[str, Any]]:
    return [{"do": "clone the host's /dev/null (open_tree)"}] if it.ctx.linux.get("maskedPaths") else []


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
    how = it.actions[0]["do"]
    if how == "chroot":
        switch.chroot_only(ctx.rootfs)
    elif how == "move and chroot":
        switch.move_and_chroot(ctx.rootfs, ctx.proc_fd)
    else:
        switch.pivot(ctx.rootfs)
    if it.root_fd >= 0:
        os.close(it.root_fd)
        it.root_fd = -1


def plan_switch_root(it: Init) -> list[dict[str, Any]]:
    ctx = it.ctx
    if "mount" not in ctx.new_namespaces and "mount" not in ctx.join_namespaces:
        return [{"do": "chroot", "path": ctx.rootfs}]
    if ctx.no_pivot:
        return [{"do": "move and chroot", "path": ctx.rootfs}]
    return [{"do": "pivot_root", "path": ctx.rootfs}, {"do": "detach the old root"}]


def create_cwd(it: Init) -> None:
    os.makedirs(it.actions[0]["path"], mode=0o755, exist_ok=True)


def plan_create_cwd(it: Init) -> list[dict[str, Any]]:
    return [{"do": "mkdir -p", "path": it.ctx.process.get("cwd") or "/", "mode": "0755"}]


def _own_mount_namespace(it: Init) -> bool:
    return "mount" in it.ctx.new_namespaces or "mount" in it.ctx.join_namespaces


def open_pty_before_chroot(it: Init) -> None:
    """Sharing the host's mount namespace, the container gets no mount (none
    is ours to undo there), so its rootfs has no /dev/ptmx, /dev/pts of its
    own: the pty comes from the host's /dev/ptmx, opened while the init still
    sees the host's /.  (runc mounts the config's /dev and devpts in the
    host's namespace instead, and leaves them there.)"""
    from pyrun.process import terminal     # preloaded
    it.pty = terminal.open_pty(it.ctx.process.get("consoleSize"))


def plan_open_pty_before_chroot(it: Init) -> list[dict[str, Any]]:
    if not it.ctx.process.get("terminal") or it.ctx.mode != "init" or _own_mount_namespace(it):
        return []
    return [{"do": "open a pty from the host's /dev/ptmx", "size": it.ctx.process.get("consoleSize")}]


def set_up_console(it: Init) -> None:
    sock = it.ctx.console_socket
    if sock is None:
        return
    from pyrun.process import terminal     # preloaded
    master, slave = it.pty or terminal.open_pty(it.ctx.process.get("consoleSize"))
    it.pty = None
    # The process's own console, as runc: its user owns the pty (the group
    # stays devpts' gid=5), else a non-root process cannot reopen it
    # (/dev/stdin, `tty`, ssh-style password prompts).
    owner = next((act for act in it.actions if act["do"] == "give the pty to the process's user"), None)
    if owner is not None:
        try:
            os.fchown(slave, owner["uid"], -1)
        except OSError as e:
            # As runc: an unmapped uid (EINVAL), an owner we may not change
            # in a user namespace (EPERM), a read-only /dev: leave it be.
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise
    if any(act["do"] == BIND_CONSOLE for act in it.actions):
        terminal.mount_console(slave)
    terminal.send_master(sock, master)
    os.close(master)
    sock.close()
    # The pty replaces our stdio now, not at exec: the caller (containerd's
    # shim) reads create's output to EOF, and must not wait for `start`.
    terminal.make_controlling(slave)


def plan_set_up_console(it: Init) -> list[dict[str, Any]]:
    if not it.ctx.process.get("terminal"):
        return []
    out: list[dict[str, Any]] = []
    if not plan_open_pty_before_chroot(it):
        out.append({"do": "open a pty from /dev/ptmx", "size": it.ctx.process.get("consoleSize")})
    uid = int((it.ctx.process.get("user") or {}).get("uid", 0))
    if uid:
        out.append({"do": "give the pty to the process's user", "uid": uid,
                    "unless": "EINVAL, EPERM or EROFS (left as it is)"})
    if it.ctx.mode == "init" and _own_mount_namespace(it):    # as runc: an exec'd process mounts nothing
        out.append({"do": BIND_CONSOLE})
    return out + [{"do": "send the master to the console socket"}, {"do": "make the pty our controlling tty"}]


BIND_CONSOLE = "bind the pty onto /dev/console"


def finalize_rootfs(it: Init) -> None:
    for act in it.actions:
        if act["do"] == REOPEN_NULL:
            _reopen_null_stdio()
        else:
            switch.remount_root_readonly(act["path"])


REOPEN_NULL = "reopen stdio left on the host's /dev/null as the container's /dev/null"


def plan_finalize_rootfs(it: Init) -> list[dict[str, Any]]:
    """Without a mount namespace of its own the container's / is a directory
    of the host's (chroot), no mount to remount: as runc, which finalizes the
    rootfs only in a mount namespace, root.readonly is then not applied.
    A read-only /dev filesystem was mounted read-write (mounts.py): made
    read-only now. First, always: stdio on the host's /dev/null becomes the
    container's own (_reopen_null_stdio)."""
    ctx = it.ctx
    out: list[dict[str, Any]] = [{"do": REOPEN_NULL}]
    if "mount" not in ctx.new_namespaces and "mount" not in ctx.join_namespaces:
        return out
    if (ctx.spec.get("root") or {}).get("readonly"):
        out.append({"do": "remount read-only", "path": "/"})
    if dev_read_only(ctx.spec.get("mounts") or []):
        out.append({"do": "remount read-only", "path": "/dev"})
    return out


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
    for act in it.actions:
        if act["do"] == "sethostname":
            import _socket
            _socket.sethostname(act["name"])
        else:
            s.setdomainname(act["name"])


def plan_set_hostname(it: Init) -> list[dict[str, Any]]:
    spec = it.ctx.spec
    return [{"do": do, "name": spec[key]} for do, key in (("sethostname", "hostname"), ("setdomainname", "domainname"))
            if spec.get(key)]


def apply_sysctls(it: Init) -> None:
    """Through the runtime's procfs fd: the container's /proc/sys may be a
    fake tree, and the write would land in a host file behind it."""
    for act in it.actions:
        key, value = act["key"], act["value"]
        try:
            procfs.write(it.ctx.proc_fd, act["file"], value)
        except OSError as e:
            raise OSError(e.errno, f"failed to set sysctl {key}={value}: {oserror_text(e)}") from None


def plan_apply_sysctls(it: Init) -> list[dict[str, Any]]:
    return [{"do": "write sysctl", "key": key, "value": str(value), "file": "sys/" + key.replace(".", "/")}
            for key, value in (it.ctx.linux.get("sysctl") or {}).items()]


def restrict_paths(it: Init) -> None:
    null = it.null
    try:
        for act in it.actions:
            if act["do"] == "read-only bind":
                restrict.readonly(act["path"])
            elif null is not None:
                restrict.mask(act["path"], null)
    finally:
        if null is not None:
            null.close()
            it.null = None


def plan_restrict_paths(it: Init) -> list[dict[str, Any]]:
    linux = it.ctx.linux
    return [{"do": "read-only bind", "path": p} for p in linux.get("readonlyPaths") or []] + \
        [{"do": "mask", "path": p, "with": "/dev/null (file) or read-only tmpfs (directory)"}
         for p in restrict.unique(linux.get("maskedPaths") or [])]


def set_rootfs_propagation(it: Init) -> None:
    """rootfsPropagation is the container's root mount's own: set on `/`
    once it is the root, and last, after every bind of the set-up (an
    unbindable root could be the source of none). Before the switch it only
    governed the host side, as in runc, whose container root stays private."""
    s.mount(None, "/", None, it.actions[0]["flags"])


def plan_set_rootfs_propagation(it: Init) -> list[dict[str, Any]]:
    ctx = it.ctx
    propagation = ctx.linux.get("rootfsPropagation")
    if propagation and ("mount" in ctx.new_namespaces or "mount" in ctx.join_namespaces):
        return [{"do": "set propagation of /", "propagation": propagation, "flags": PROPAGATION[propagation]}]
    return []


def apply_lsm_labels(it: Init) -> None:
    """AppArmor profile / SELinux exec label for the process (checked at create)."""
    from pyrun import lsm
    lsm.apply(it.ctx.process, it.ctx.proc_fd)


def plan_apply_lsm_labels(it: Init) -> list[dict[str, Any]]:
    proc = it.ctx.process
    return [{"do": "set exec label", key: proc[key]} for key in ("apparmorProfile", "selinuxLabel") if proc.get(key)]


def set_no_new_privileges(it: Init) -> None:
    s.prctl(s.PR_SET_NO_NEW_PRIVS, 1)


def plan_set_no_new_privileges(it: Init) -> list[dict[str, Any]]:
    return [{"do": "prctl(PR_SET_NO_NEW_PRIVS, 1)"}] if it.ctx.process.get("noNewPrivileges") else []


def set_scheduling(it: Init) -> None:
    """process.scheduler (sched_setattr) and process.ioPriority (ioprio_set).

    The kernel judges a policy against the cgroup the init is in (a
    SCHED_DEADLINE task must be free to run on every CPU of its root domain;
    SCHED_FIFO/RR need real-time time), so the init's limits must be written
    first, as runc 1.3+ writes them before its init goes this far."""
    from pyrun.linux import sched
    if _planned(it, "ask the parent to write the cgroup limits"):
        it.ch.send(Msg.LIMITS_REQUEST)
        it.ch.expect(Msg.LIMITS_DONE)
    cpus = ((it.ctx.linux.get("resources") or {}).get("cpu") or {}).get("cpus") or ""
    sched.apply(it.ctx.process, cpuset=cpus)


def plan_set_scheduling(it: Init) -> list[dict[str, Any]]:
    proc = it.ctx.process
    out: list[dict[str, Any]] = []
    if proc.get("scheduler") and it.ctx.mode == "init":     # exec joins a cgroup whose limits are set
        out.append({"do": "ask the parent to write the cgroup limits"})
    return out + [{"do": do, key: proc[key]} for do, key in (("sched_setattr", "scheduler"),
                                                             ("ioprio_set", "ioPriority")) if proc.get(key)]


def set_personality(it: Init) -> None:
    from pyrun.linux import personality
    personality.apply(it.ctx.linux["personality"])


def plan_set_personality(it: Init) -> list[dict[str, Any]]:
    persona = it.ctx.linux.get("personality")
    return [{"do": "personality", "personality": persona}] if persona else []


def set_memory_policy(it: Init) -> None:
    from pyrun.linux import mempolicy
    mempolicy.apply(it.ctx.linux["memoryPolicy"])


def plan_set_memory_policy(it: Init) -> list[dict[str, Any]]:
    policy = it.ctx.linux.get("memoryPolicy")
    return [{"do": "set_mempolicy", "policy": policy}] if policy else []


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
    _load_seccomp(it)


def load_seccomp_late(it: Init) -> None:
    """With no_new_privs, as late as possible: little Python runs under the filter."""
    _load_seccomp(it)


def _plan_seccomp(it: Init, nnp: bool) -> list[dict[str, Any]]:
    if it.ctx.seccomp is None or bool(it.ctx.process.get("noNewPrivileges")) != nnp:
        return []
    cfg = it.ctx.linux.get("seccomp") or {}
    out: list[dict[str, Any]] = [{"do": "seccomp(SECCOMP_SET_MODE_FILTER)", "defaultAction": cfg.get("defaultAction"),
                                  "flags": it.ctx.seccomp.flags}]
    if it.ctx.seccomp.notify:
        out.append({"do": "send the listener fd to the agent", "listenerPath": it.ctx.seccomp.listener_path})
    return out


def plan_load_seccomp_before_user_switch(it: Init) -> list[dict[str, Any]]:
    return _plan_seccomp(it, False)


def plan_load_seccomp_late(it: Init) -> list[dict[str, Any]]:
    return _plan_seccomp(it, True)


def prepare_environment(it: Init) -> None:
    env = list(it.ctx.process.get("env") or []) + it.ctx.extra_env
    if _planned(it, "HOME from the container's /etc/passwd"):
        env.append("HOME=" + _home_of(int((it.ctx.process.get("user") or {}).get("uid", 0))))
    it.env = env


def plan_prepare_environment(it: Init) -> list[dict[str, Any]]:
    env = list(it.ctx.process.get("env") or []) + it.ctx.extra_env
    out: list[dict[str, Any]] = [{"do": "environment", "variables": len(env)}]
    if not _home_given(env):
        out.append({"do": "HOME from the container's /etc/passwd", "fallback": "/"})
    return out


def _home_given(env: list[str]) -> bool:
    """The last HOME entry wins, and an empty one counts as unset (runc 1.2+:
    `HOME=` in the config still gets the user's home)."""
    homes = [e for e in env if e.startswith("HOME=")]
    return bool(homes) and homes[-1] != "HOME="


def apply_rlimits(it: Init) -> None:
    """The parent sets them with prlimit while we are still root: after the
    user switch it could no longer (runc's procReady/procRun)."""
    it.ch.send(Msg.RLIMITS_REQUEST)
    it.ch.expect(Msg.RLIMITS_DONE)


def plan_apply_rlimits(it: Init) -> list[dict[str, Any]]:
    rlimits = it.ctx.process.get("rlimits")
    return [{"do": "ask the parent to prlimit us", "rlimits": rlimits}] if rlimits else []


def switch_user(it: Init) -> None:
    """runc's finalizeNamespace: bounding set, keep caps across setuid, drop
    to the configured user, then the final capability sets."""
    acts = {act["do"]: act for act in it.actions}
    drop = acts.get("drop from the bounding set")
    if drop is not None:
        for cap in drop["numbers"]:
            s.prctl(s.PR_CAPBSET_DROP, cap)
        s.prctl(s.PR_SET_KEEPCAPS, 1)
    # As runc: chdir while we are still root, so a cwd the runtime may enter
    # but the user may not works; where root may not (a directory of an
    # unmapped owner, NFS root squash), again as the user.
    chdir_later = not _chdir(acts["chdir while root"]["path"], still_root=True)
    if "setgroups" in acts:
        os.setgroups(acts["setgroups"]["groups"])
    gid, uid = acts["setresgid"]["gid"], acts["setresuid"]["uid"]
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    die_with_parent(it.ch)          # the kernel cleared it with the uid/gid change
    caps = acts.get("capset")
    if caps is not None:
        s.prctl(s.PR_SET_KEEPCAPS, 0)
        s.capset(caps["masks"]["effective"], caps["masks"]["permitted"], caps["masks"]["inheritable"])
        for cap in acts["raise ambient"]["numbers"]:
            s.prctl(s.PR_CAP_AMBIENT, s.PR_CAP_AMBIENT_RAISE, cap)
    os.umask(int(acts["umask"]["mask"], 8))
    if chdir_later:
        _chdir(acts["chdir as the user if root was refused"]["path"], still_root=False)
    # CVE-2024-21626: a leaked host directory as cwd shows up as unreachable.
    try:
        inside = os.getcwd().startswith("/")
    except FileNotFoundError:
        inside = False
    if not inside:
        raise InitError("switch user", "current working directory is outside of container mount "
                        "namespace root -- possible container breakout detected")


def plan_switch_user(it: Init) -> list[dict[str, Any]]:
    proc = it.ctx.process
    user = proc.get("user") or {}
    caps = proc.get("capabilities")
    # Never the container's /proc/sys/kernel: a fake cap_last_cap of 31
    # would leave CAP_SYSLOG, CAP_BPF... in the bounding set.
    last = it.last_cap
    out: list[dict[str, Any]] = []
    masks: dict[str, int] = {}
    if caps is not None:
        try:
            masks = {k: cap_mask(caps.get(k) or [], last)
                     for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
        except ValueError as e:
            raise InitError("switch user", str(e)) from None
        dropped = [cap for cap in range(last + 1) if not masks["bounding"] & (1 << cap)]
        out += [{"do": "drop from the bounding set", "numbers": dropped, **_cap_names(it, caps=dropped)},
                {"do": "prctl(PR_SET_KEEPCAPS, 1)"}]
    cwd = proc.get("cwd") or "/"
    out.append({"do": "chdir while root", "path": cwd})
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    if not it.setgroups_denied:
        out.append({"do": "setgroups", "groups": [int(g) for g in user.get("additionalGids") or []]})
    out += [{"do": "setresgid", "gid": gid}, {"do": "setresuid", "uid": uid}]
    if caps is not None:
        capset: dict[str, Any] = {"do": "capset", "masks": {k: masks[k] for k in ("effective", "permitted", "inheritable")}}
        if it.detail:
            capset.update(_cap_names(it, **{k: [c for c in range(last + 1) if masks[k] & (1 << c)]
                                            for k in ("bounding", "effective", "permitted", "inheritable")}))
        out.append(capset)
        ambient = [c for c in range(last + 1) if masks["ambient"] & (1 << c)]
        out.append({"do": "raise ambient", "numbers": ambient, **_cap_names(it, caps=ambient)})
    umask = user.get("umask")
    out.append({"do": "umask", "mask": f"{0o022 if umask is None else int(umask):04o}"})
    out.append({"do": "chdir as the user if root was refused", "path": cwd, "check": "cwd inside the container"})
    return out


def _cap_names(it: Init, **sets: list[int]) -> dict[str, list[str]]:
    """{key: capability names} for `explain` and the trace; nothing otherwise."""
    if not it.detail:
        return {}
    from pyrun.linux.capabilities import CAPABILITIES
    names = {n: name for name, n in CAPABILITIES.items()}
    return {key: [names.get(n, f"CAP_{n}") for n in numbers] for key, numbers in sets.items()}


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
        if not stat.S_ISDIR(st.st_mode) and _may_execute(candidate, st.st_mode):
            it.executable = candidate
            return
        if "/" in name:
            raise InitError("look up executable", f'exec: "{name}": permission denied')
    raise InitError("look up executable", f'exec: "{name}": executable file not found in $PATH')


def _may_execute(path: str, mode: int) -> bool:
    """As Go's exec.LookPath (runc 1.2+): access(X_OK) as the process's user,
    which also refuses a file on a noexec mount, so that execve cannot fail
    with EACCES after `create` has gone; the mode bits where a filter or an
    old kernel refuses the call itself."""
    err = s.eaccess(path, os.X_OK)
    if err in (errno.ENOSYS, errno.EPERM):
        return bool(mode & 0o111)
    return err == 0


def plan_look_up_executable(it: Init) -> list[dict[str, Any]]:
    args = it.ctx.process.get("args") or []
    return [{"do": "look up executable", "name": args[0] if args else None, "in": "$PATH or " + DEFAULT_PATH}]


def mark_fds_cloexec(it: Init) -> None:
    """Nothing but stdio and the preserved fds may cross into the container
    (CVE-2024-21626). Done before the container's seccomp filter, which may
    list neither close_range nor openat2 (runtime-tools' default profile);
    where close_range is refused anyway (an older kernel, a filter pyrun
    itself runs under) fd by fd, as runc does. Every fd opened after this
    is Python's, and so close-on-exec."""
    procfs.cloexec_from(it.ctx.proc_fd, 3 + it.ctx.preserve_fds)


def plan_mark_fds_cloexec(it: Init) -> list[dict[str, Any]]:
    return [{"do": "close-on-exec from fd", "fd": 3 + it.ctx.preserve_fds,
             "how": "close_range, else fd by fd from the runtime's procfs"}]


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
    if _planned(it, "close the channel"):
        # `pyrun create` exits now; `start` hears from us through exec.fifo.
        # An exec'd process keeps the channel (close-on-exec) until execve:
        # `pyrun exec` reads it to EOF, so a failure of `exec` reaches it.
        it.ch.close()
        it.ch = None


def plan_report_ready(it: Init) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"do": "report ready, wait for the parent's ACK"}]
    if it.ctx.mode == "init":     # exec: kept (close-on-exec) for `pyrun exec` to read to EOF
        out.append({"do": "close the channel", "then": "failures go to exec.fifo (start) or stderr"})
    return out


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
    hooks = next((act["hooks"] for act in it.actions if act["do"] == "run startContainer hooks"), None)
    if hooks:
        from pyrun.hooks import hook_state, run_hooks
        # A hook without its own env inherits the process's, as runc's (hooks.bats).
        run_hooks("startContainer", hooks,
                  hook_state(it.ctx.spec, it.ctx.container_id, "created", os.getpid(), it.ctx.bundle),
                  default_env=it.env)


def plan_wait_for_start(it: Init) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"do": "open exec.fifo for writing (blocks until start)"}]
    hooks = (it.ctx.spec.get("hooks") or {}).get("startContainer")
    if hooks:
        out.append({"do": "run startContainer hooks", "namespace": "container", "hooks": hooks})
    return out


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
    if _planned(it, "write the verdict 0 to exec.fifo"):
        os.write(it.verdict_fd, b"0")
    try:
        os.execve(it.executable, args, env)
    except OSError as e:
        _execve_failed(it.executable, e.errno or errno.EIO)


def _execve_failed(path: str, err: int) -> None:
    """execve itself failed after the lookup passed (a missing `#!`
    interpreter, a format the kernel does not know, a seccomp refusal).

    As runc 1.2+ (runc#4171): the caller was already told the process
    started (`start` got "0", `exec` was released), so nothing more goes to
    it; the process's own stderr gets the one line `exec <path>: <reason>`
    and the exit status is 255. For `run` and `exec` that stderr is the
    caller's; for a detached or created container it is the container's
    (its console, or the stdio the shim gave `create`)."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)    # a closed stderr must not change the status
    try:
        os.write(2, f"exec {path}: {strerror(err)}\n".encode(errors="replace"))
    except OSError:
        pass
    os._exit(255)


def plan_exec(it: Init) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if it.ctx.preserve_fds:
        out.append({"do": "make inheritable", "fds": list(range(3, 3 + it.ctx.preserve_fds))})
    if it.ctx.mode == "init":     # `start` reads it to EOF: execve closes it (close-on-exec)
        out.append({"do": "write the verdict 0 to exec.fifo"})
    return out + [{"do": "execve", "args": it.ctx.process.get("args") or []}]


def _always(what: str) -> Callable[[Init], list[dict[str, Any]]]:
    return lambda _it: [{"do": what}]


def _planned(it: Init, do: str) -> bool:
    return any(act["do"] == do for act in it.actions)


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
    ("open pty before chroot", open_pty_before_chroot),
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
    # before seccomp (as runc): a profile may deny personality(2) to the container
    ("set personality", set_personality),
    ("set memory policy", set_memory_policy),
    ("prepare environment", prepare_environment),
    ("apply rlimits", apply_rlimits),
    ("mark fds close-on-exec", mark_fds_cloexec),
    ("load seccomp (no_new_privs off)", load_seccomp_before_user_switch),
    ("switch user", switch_user),
    ("look up executable", look_up_executable),
    ("load seccomp (no_new_privs on)", load_seccomp_late),
    ("report ready", report_ready),
    ("wait for start", wait_for_start),
    ("exec", exec_process),
]


# Each step's plan: what it will do, computed from the context; the step
# performs exactly these actions (it.actions) and is skipped when there are
# none.  `pyrun explain` prints them without running the steps.
PLANS: dict[Callable[[Init], None], Callable[[Init], list[dict[str, Any]]]] = {
    arm_parent_death: _always("wait until stage 1 is reaped, then PR_SET_PDEATHSIG SIGKILL"),
    start_session: plan_start_session,
    read_kernel_facts: _always("read cap_last_cap and self/setgroups through the runtime's procfs fd"),
    join_session_keyring: plan_join_session_keyring,
    set_up_network: plan_set_up_network,
    prepare_rootfs: plan_prepare_rootfs,
    run_create_hooks: plan_run_create_hooks,
    hold_null_device: plan_hold_null_device,
    open_private_procfs: _always("open a private procfs (fsopen/fsmount, attached nowhere)"),
    open_pty_before_chroot: plan_open_pty_before_chroot,
    switch_root: plan_switch_root,
    create_cwd: plan_create_cwd,
    set_up_console: plan_set_up_console,
    finalize_rootfs: plan_finalize_rootfs,
    set_hostname: plan_set_hostname,
    apply_sysctls: plan_apply_sysctls,
    restrict_paths: plan_restrict_paths,
    set_rootfs_propagation: plan_set_rootfs_propagation,
    apply_lsm_labels: plan_apply_lsm_labels,
    set_no_new_privileges: plan_set_no_new_privileges,
    set_scheduling: plan_set_scheduling,
    set_personality: plan_set_personality,
    set_memory_policy: plan_set_memory_policy,
    prepare_environment: plan_prepare_environment,
    apply_rlimits: plan_apply_rlimits,
    mark_fds_cloexec: plan_mark_fds_cloexec,
    load_seccomp_before_user_switch: plan_load_seccomp_before_user_switch,
    switch_user: plan_switch_user,
    look_up_executable: plan_look_up_executable,
    load_seccomp_late: plan_load_seccomp_late,
    report_ready: plan_report_ready,
    wait_for_start: plan_wait_for_start,
    exec_process: plan_exec,
}


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
    steps = EXEC_STEPS if ctx.mode == "exec" else STEPS
    for index, (name, step) in enumerate(steps):
        if it.ch is not None:
            faults.step(name, ch)
        try:
            try:
                it.actions = PLANS[step](it)
                if ctx.trace_fd >= 0:
                    _trace(it, steps, index)
                if it.actions:
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
    text = str(e).split(": ", 1)[1]
    try:
        if it.verdict_fd >= 0:
            os.write(it.verdict_fd, b"1" + f"{e.step}: {text}".encode(errors="replace")[:4000])
        else:
            os.write(2, f"{START_FAILED}: {init_failed_text(e.step, text)}\n".encode(errors="replace"))
    except OSError:
        pass
    os._exit(255)


def _trace(it: Init, steps: list[tuple[str, Callable[[Init], None]]], index: int) -> None:
    """PYRUN_TRACE: record the step's plan before it runs. At `report ready`
    the remaining steps are recorded too and the trace file closed: no host
    file stays open in the init while it waits for `start`."""
    from pyrun import trace
    name = steps[index][0]
    trace.emit(it.ctx.trace_fd, it.ctx.mode, name, it.actions)
    if name == "report ready":
        for later, step in steps[index + 1:]:
            trace.emit(it.ctx.trace_fd, it.ctx.mode, later, PLANS[step](it))
        os.close(it.ctx.trace_fd)
        it.ctx.trace_fd = -1


def plan(it: Init) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every step's plan, without running any (`pyrun explain`); `it.last_cap`
    and `it.setgroups_denied` must be set as read_kernel_facts sets them."""
    return [(name, PLANS[step](it)) for name, step in STEPS]


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
