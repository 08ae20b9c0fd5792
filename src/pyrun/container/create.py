"""`create`: claim the ID, build the cgroup, launch the stages, record the state.

Anything that fails after the ID is claimed is undone here, so a failed
create leaves no state directory, fifo, cgroup or process behind.
"""
from __future__ import annotations

import os
import time
from pyrun.records import dataclass   # not dataclasses: ~4 ms of imports
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun import SPEC_VERSION, faults, log, program
from pyrun.errors import START_FAILED, PyrunError, strerror
from pyrun.linux import unixsock    # not socket: ~4 ms of imports
from pyrun.spec.load import load_bundle
from pyrun.state.store import PENDING_FILE, ContainerDir, validated_cache, validate_id, write_pid_file


@dataclass
class CreateRequest:
    root: str
    id: str
    bundle: str | None = None
    pid_file: str | None = None
    console_socket: str | None = None
    pidfd_socket: str | None = None
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    detach: bool = True
    rootless: str = "auto"          # --rootless: auto|true|false (cgroup failures are not fatal)
    systemd_cgroup: bool = False    # --systemd-cgroup: a transient systemd scope (cgroups/systemd.py)
    later: tuple[str, ...] = ()     # modules the caller needs once create returns (see _meanwhile)


@dataclass
class Created:
    pid: int
    state: dict[str, Any]
    console: unixsock.Socket | None = None   # `run -t` without --console-socket: the pty master arrives here


def create(req: CreateRequest) -> Created:
    validate_id(req.id)
    if req.pid_file:
        req.pid_file = os.path.abspath(req.pid_file)   # before load_bundle changes directory
    bundle = load_bundle(req.bundle, validated_cache(req.root))
    log.debug(f"create {req.id}: config.json of bundle {bundle.path} loaded and valid")
    spec = bundle.config
    _check_host_support(spec)
    _check_id_mappings(spec)
    if spec["process"].get("capabilities"):
        from pyrun.container.capsets import drop_ungrantable
        for warning in drop_ungrantable(spec["process"]):
            log.warning(warning)
    process = spec["process"]
    _check_terminal(bool(process.get("terminal")), req)
    cdir = ContainerDir.create(req.root, req.id)
    log.debug(f"create {req.id}: state directory {cdir.path} claimed")
    faults.point("create: claimed")
    trace_fd = -1
    if os.environ.get("PYRUN_TRACE"):      # pyrun/trace.py: a debugging aid, imported only then
        from pyrun import trace
        trace_fd = trace.open_trace()
        trace.emit(trace_fd, "parent", "claim state directory", claim_plan(req.root, req.id))
    cgroup = None
    fifo_fd = -1
    sink = None    # a foreground `run -t` keeps one end; the init sends the master to the other
    idmapped: dict[int, int] = {}   # detached idmapped mounts the init inherits
    try:
        if process.get("terminal") and not req.detach and not req.console_socket:
            sink = unixsock.socketpair()
        cdir.make_fifo()
        fifo_fd = cdir.fifo_path_fd()
        if _wants_idmap(spec):
            from pyrun.rootfs import idmapped as idmapped_mod
            from pyrun.rootfs.mounts import rootfs_names
            idmapped = idmapped_mod.prepare(spec, bundle.path, rootfs_names(spec, bundle.path, bundle.rootfs))
        from pyrun.cgroups.manager import new as new_cgroup
        cgroup = new_cgroup(spec, req.id, req.rootless, req.systemd_cgroup)
        cdir.save(cgroup.record(), PENDING_FILE)    # for `delete` if we die before _record
        log.debug(f"create {req.id}: cgroup made: {cgroup}")
        faults.point("create: cgroup made")
        ctx = _launch_context(spec, bundle.path, bundle.rootfs, fifo_fd, cgroup, req,
                              sink[1] if sink else None)
        ctx.parent_fds = [cdir.fd]
        ctx.idmapped_mounts = idmapped
        ctx.bind_source_indices = _userns_binds(spec, idmapped, bundle.path, ctx.rootfs_names)
        if trace_fd >= 0:
            ctx.trace_fd = trace_fd
            trace.emit(trace_fd, "parent", "make cgroup", cgroup.plan(spec))
            trace.emit(trace_fd, "parent", "compile seccomp", seccomp_plan(spec))
        from pyrun.process.launcher import launch
        pidfd_sock = None
        if req.pidfd_socket:
            from pyrun.container import pidfd
            pidfd_sock = pidfd.connect(req.pidfd_socket)
            ctx.parent_fds.append(pidfd_sock.fileno())     # not for the container
        owner = _meanwhile(req, spec, cgroup)
        log.debug(f"create {req.id}: starting the init")
        try:
            launched = launch(ctx)
        except PyrunError as e:
            raise e.reworded(f"{START_FAILED}: {e}") from None
        if log.debugging():
            log.debug(f"create {req.id}: init {launched.pid} ready after its steps: {init_steps('init')}")
        if trace_fd >= 0:
            trace.emit(trace_fd, "parent", "record state", record_plan(cdir.path, req.pid_file))
        state = _record(cdir, spec, bundle.path, bundle.rootfs, launched.pid, cgroup, ctx, owner)
        faults.point("create: state recorded")
        log.debug(f"create {req.id}: state recorded")
        if req.pid_file:
            write_pid_file(req.pid_file, launched.pid)
            log.debug(f"create {req.id}: pid {launched.pid} written to {req.pid_file}")
        if pidfd_sock is not None:
            pidfd.send(pidfd_sock, launched.pid, "standard")
        launched.release()
        return Created(launched.pid, state, sink[0] if sink else None)
    except BaseException:
        if sink:
            sink[0].close()
        made = cgroup is not None       # None: create failed before the cgroup step
        if made:
            try:
                cgroup.destroy()
            except OSError:
                pass
        cdir.remove()
        if made and (spec.get("hooks") or {}).get("poststop"):
            # runtime.md steps 3-5: a failed create continues at step 12, then 13 (poststop)
            from pyrun.container.delete import _run_poststop
            _run_poststop({"id": req.id, "bundle": bundle.path}, spec, spec["hooks"]["poststop"])
        raise
    finally:
        for fd in idmapped.values():
            os.close(fd)     # the init has its copies
        if sink:
            sink[1].close()
        if fifo_fd >= 0:
            os.close(fifo_fd)
        if trace_fd >= 0:
            os.close(trace_fd)
        cdir.close()


def init_steps(mode: str) -> str:
    """The names of the steps an init (or an exec'd process) has gone through
    once it reports READY, in order (process/init.py STEPS)."""
    from pyrun.process.init import EXEC_STEPS, STEPS
    names = [name for name, _step in (EXEC_STEPS if mode == "exec" else STEPS)]
    return ", ".join(names[:names.index("report ready") + 1] if "report ready" in names else names)


def claim_plan(root: str, container_id: str) -> list[dict[str, Any]]:
    path = os.path.join(root, container_id)
    return [{"do": "mkdir and flock", "path": path}, {"do": "mkfifo", "path": os.path.join(path, "exec.fifo")}]


def seccomp_plan(spec: dict[str, Any]) -> list[dict[str, Any]]:
    cfg = (spec.get("linux") or {}).get("seccomp")
    if not cfg:
        return []
    per_action: dict[str, int] = {}
    for rule in cfg.get("syscalls") or []:
        per_action[rule.get("action", "")] = per_action.get(rule.get("action", ""), 0) + len(rule.get("names") or [])
    return [{"do": "compile the filter (or reuse the cached one)", "defaultAction": cfg.get("defaultAction"),
             "architectures": cfg.get("architectures") or [], "flags": cfg.get("flags") or [],
             "syscalls_per_action": per_action, "listenerPath": cfg.get("listenerPath")}]


def record_plan(state_dir: str, pid_file: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"do": "write state.json", "path": os.path.join(state_dir, "state.json")}]
    if pid_file:
        out.append({"do": "write the pid file", "path": pid_file})
    return out


def _check_host_support(spec: dict[str, Any]) -> None:
    """Features the config asks for that this host lacks: refuse before forking."""
    process, linux = spec.get("process") or {}, spec.get("linux") or {}
    if process.get("apparmorProfile") or process.get("selinuxLabel") or linux.get("mountLabel"):
        from pyrun import lsm
        lsm.check(spec)
    if linux.get("intelRdt"):
        from pyrun import intelrdt
        intelrdt.check(linux["intelRdt"])
    if process.get("scheduler") is not None or process.get("ioPriority") is not None:
        from pyrun.linux import sched
        sched.validate(process)
    if linux.get("memoryPolicy") is not None:      # {} too: runc refuses it (no mode)
        from pyrun.linux import mempolicy
        mempolicy.validate(linux["memoryPolicy"])
    if linux.get("personality"):
        from pyrun.linux import personality
        personality.validate(linux["personality"])
    if linux.get("netDevices"):
        from pyrun import netdev
        netdev.validate(linux)
    if _wants_idmap(spec):
        from pyrun.rootfs import idmapped
        idmapped.validate(spec)


def _wants_idmap(spec: dict[str, Any]) -> bool:
    return any("idmap" in (m.get("options") or []) or "ridmap" in (m.get("options") or [])
               or "uidMappings" in m or "gidMappings" in m for m in spec.get("mounts") or [])


def _userns_binds(spec: dict[str, Any], idmapped: dict[int, int], bundle: str,
                  roots: tuple[str, ...]) -> list[int]:
    """The bind entries whose sources we, host root, open for a container in a
    user namespace: its root may be unable to reach them (a directory of mode
    700 on the way), as runc opens them.  We open them in the container's mount
    namespace (launcher.py), so that the bind inherits the flags the kernel
    locked there; a clone made out here would carry no lock, and the
    container's root could then clear ro, nosuid, nodev or noexec.  Not
    rootless: the container's root is the caller and reaches what it does.
    Not a source inside the rootfs either: the init finds that one in its root
    at its turn (rootfs/mounts.py container_source)."""
    linux = spec.get("linux") or {}
    if os.geteuid() != 0 or not any(ns.get("type") == "user" for ns in linux.get("namespaces") or []):
        return []
    from pyrun.rootfs.mounts import container_source
    return [i for i, m in enumerate(spec.get("mounts") or [])
            if i not in idmapped and m.get("source")
            and (m.get("type") == "bind" or {"bind", "rbind"} & set(m.get("options") or []))
            and container_source(m, bundle, roots) is None]


def _check_terminal(terminal: bool, req: CreateRequest) -> None:
    if terminal and req.detach and not req.console_socket:
        raise PyrunError(f"cannot allocate tty if {program()} will detach without setting console socket")
    if not terminal and req.console_socket:
        raise PyrunError(f"cannot use console socket if {program()} will not detach or allocate tty")


def _check_id_mappings(spec: dict[str, Any]) -> None:
    """An ordinary user's uid/gid maps must be writable (own id or /etc/sub[ug]id)."""
    if os.geteuid() != 0:
        from pyrun import idmaps
        linux = spec.get("linux") or {}
        new_userns = any(ns.get("type") == "user" and not ns.get("path") for ns in linux.get("namespaces") or [])
        idmaps.check(linux, new_userns, spec.get("mounts") or [])


def _launch_context(spec: dict[str, Any], bundle: str, rootfs: str, fifo_fd: int,
                    cgroup: Any, req: CreateRequest,
                    console_sink: unixsock.Socket | None) -> Any:
    from pyrun.process.context import LaunchContext
    new, join = namespaces_of(spec)
    console = console_sink
    if req.console_socket:
        try:
            console = unixsock.connect(req.console_socket)
        except OSError as e:
            raise PyrunError(f"failed to connect to console socket {req.console_socket}: {strerror(e.errno)}") from None
    extra_env: list[str] = []
    preserve = req.preserve_fds
    listen = os.environ.get("LISTEN_FDS", "")
    if listen.isdigit() and int(listen) > 0 and os.environ.get("LISTEN_PID") == str(os.getpid()):
        preserve += int(listen)
        extra_env = [f"LISTEN_FDS={listen}", "LISTEN_PID=1"]
    seccomp = None
    if (spec.get("linux") or {}).get("seccomp"):
        from pyrun.seccomp import cache      # compiled here (or reused), outside the container's cgroup
        seccomp = cache.compiled(spec["linux"]["seccomp"], req.root)
    return LaunchContext(container_id=req.id, spec=spec, seccomp=seccomp, bundle=bundle, rootfs=rootfs, fifo_fd=fifo_fd,
                         cgroup=cgroup, cgroup_binds=cgroup.binds, new_namespaces=new,
                         join_namespaces=join, console_socket=console, no_pivot=req.no_pivot,
                         no_new_keyring=req.no_new_keyring, preserve_fds=preserve,
                         extra_env=extra_env)


def namespaces_of(spec: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """(types created, {type: path joined})."""
    new, join = [], {}
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("path"):
            join[ns["type"]] = ns["path"]
        else:
            new.append(ns["type"])
    return new, join


def _meanwhile(req: CreateRequest, spec: dict[str, Any], cgroup: Any) -> str:
    """Work that would otherwise follow READY, done before the stages start.

    Stage 1's cgroup join waits for the grace period `warm_join` started, and
    all of this fits in that wait (on this host the grace period is longer
    than the parent's whole preparation): the limit writers and the modules
    `_record` and the caller (`run`: start, wait, delete) need later, and the
    state's owner.  Returns the owner."""
    for name in ("pyrun.linux.namespaces", "pyrun.linux.proc") + req.later:
        __import__(name)
    cgroup.prepare((spec.get("linux") or {}).get("resources"))
    return _owner()


def _record(cdir: ContainerDir, spec: dict[str, Any], bundle: str, rootfs: str, pid: int,
            cgroup: Any, ctx: Any, owner: str) -> dict[str, Any]:
    from pyrun.linux.namespaces import NAMESPACES
    from pyrun.linux.proc import exe_id, start_time
    ns_paths = {t: f"/proc/{pid}/ns/{NAMESPACES[t][1]}" for t in ctx.new_namespaces}
    ns_paths.update(ctx.join_namespaces)
    state = {
        "id": cdir.id,
        "oci_version": spec.get("ociVersion", SPEC_VERSION),
        "init_process_pid": pid,
        "init_process_start": start_time(pid),
        "init_process_exe": exe_id(pid),    # still this interpreter's while the init waits for start
        "created": _rfc3339_now(),
        "bundle": bundle,
        "rootfs": rootfs,
        "annotations": spec.get("annotations") or {},
        "owner": owner,
        "rootless": os.geteuid() != 0,      # runc: RootlessEUID (and so rootless cgroups)
        **cgroup.record(),
        "namespace_paths": ns_paths,
        "config": spec,
    }
    cdir.save(state)
    return state


def _rfc3339_now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def _owner() -> str:
    import pwd
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "#" + str(os.geteuid())
