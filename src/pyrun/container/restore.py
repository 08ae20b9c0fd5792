"""`restore`: a new container from a checkpoint, its processes brought back by
CRIU into a cgroup and state directory made as `create` makes them.

CRIU runs as our child (`criu swrk`) and restores the init as our child too
(rst_sibling), so a foreground restore waits for it as `run` does. The
container is recorded `running` with the new pid when CRIU reports
`post-restore`, before the restored processes resume.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun import log
from pyrun.container.checkpoint import DESCRIPTORS, common_opts, notify_status
from pyrun.container.create import CreateRequest, _check_terminal, _owner, _rfc3339_now
from pyrun.criu import mounts, rpc
from pyrun.criu.options import CriuOptions, criu_failure
from pyrun.errors import PyrunError, oserror_text
from pyrun.spec.load import load_bundle
from pyrun.state.store import ContainerDir, validate_id, validated_cache, write_pid_file

LOG = "restore.log"
CRIU_ROOT = "criu-root"


class _Restoring:
    """What the notifications learn while CRIU works."""

    def __init__(self) -> None:
        self.pid = 0
        self.master = -1      # a terminal's pty master, for a foreground restore


def restore(req: CreateRequest, copts: CriuOptions, subreaper: bool = True) -> int:
    validate_id(req.id)
    if req.pid_file:
        req.pid_file = os.path.abspath(req.pid_file)
    bundle = load_bundle(req.bundle, validated_cache(req.root))
    spec = bundle.config
    terminal = bool((spec.get("process") or {}).get("terminal"))
    _check_terminal(terminal, req)
    try:
        with open(os.path.join(copts.image_path, DESCRIPTORS)) as f:
            import json
            descriptors = json.load(f)
    except (OSError, ValueError) as e:
        raise PyrunError(f"no checkpoint in {copts.image_path}: {DESCRIPTORS}: "
                         f"{oserror_text(e) if isinstance(e, OSError) else e}") from None
    if "cgroup" in mounts.joined_namespaces(spec):
        raise PyrunError("Do not know how to handle namespace cgroup")
    console = None
    if req.console_socket:
        from pyrun.errors import strerror
        from pyrun.linux import unixsock
        try:
            console = unixsock.connect(req.console_socket)
        except OSError as e:
            raise PyrunError(f"failed to connect to console socket {req.console_socket}: "
                             f"{strerror(e.errno)}") from None
    if subreaper and not req.detach:
        from pyrun.linux import syscalls
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    cdir = ContainerDir.create(req.root, req.id)
    cgroup = None
    held: list[int] = []
    root = os.path.join(cdir.path, CRIU_ROOT)
    mounted = False
    progress = _Restoring()
    try:
        from pyrun.cgroups.manager import new as new_cgroup
        cgroup = new_cgroup(spec, req.id, req.rootless, req.systemd_cgroup)
        held.append(os.open(copts.image_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        fds = {"images_dir_fd": held[-1]}
        if copts.work_path:
            os.makedirs(copts.work_path, mode=0o700, exist_ok=True)
            held.append(os.open(copts.work_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            fds["work_dir_fd"] = held[-1]
        # CRIU's root must be a mount point whose parent is not overmounted: a
        # bind of the rootfs in our state directory, as runc makes it.
        from pyrun.linux import syscalls
        os.mkdir(root, 0o755)
        syscalls.mount(bundle.rootfs, root, None, syscalls.MS_BIND | syscalls.MS_REC)
        mounted = True
        mounts.make_mountpoints(spec, root, bundle.path)
        opts = common_opts(copts, fds, LOG, spec)
        opts.update(evasive_devices=True, rst_sibling=True, root=root)
        ext = mounts.external_mounts(spec, bundle.rootfs, cgroup.binds, restore=True,
                                     bundle=bundle.path)
        if (spec.get("linux") or {}).get("maskedPaths"):
            ext.append(("/dev/null", "/dev/null"))
        opts["ext_mnt"] = mounts.ext_mnt_fields(ext)
        extra_fds: list[int] = []
        inherit: list[list[Any]] = []
        join: list[list[Any]] = []
        for ns_type, path in mounts.joined_namespaces(spec).items():
            if ns_type in ("network", "pid"):
                try:
                    held.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                except OSError as e:
                    raise PyrunError(f"Requested {mounts.NS_NAMES[ns_type]} namespace {path} does not exist: "
                                     f"{oserror_text(e)}") from None
                inherit.append([(1, mounts.ns_key(ns_type)), (2, 4 + len(extra_fds))])
                extra_fds.append(held[-1])
            else:
                join.append([(1, mounts.NS_NAMES[ns_type]), (2, path)])
        for fd, name in enumerate(descriptors):
            if "pipe:" in name:       # our stdio takes the place of the dumped pipes
                inherit.append([(1, name), (2, fd)])
        opts["inherit_fd"] = tuple(inherit)
        opts["join_ns"] = tuple(join)
        criu_opts = rpc.opts(**opts)

        def into_cgroup(criu_pid: int) -> None:
            """runc's criuApplyCgroups: CRIU (so the restored tree) joins the
            container's cgroup, with its limits, before it has the request."""
            if not cgroup.join_plan():      # the null cgroup: CRIU stays in ours, as the init would
                return
            cgroup.reap_warm()      # create's throwaway joiner: not counted against pids.max
            cgroup.join(criu_pid)
            cgroup.update((spec.get("linux") or {}).get("resources"))
            for ctrl, path in _own_cgroups(criu_pid):
                criu_opts.append((rpc.OPTS["cg_root"], [(1, ctrl), (2, path)] if ctrl else [(2, path)]))

        def notified(resp: rpc.Response) -> None:
            log.debug(f"criu notify: {resp.script} {resp.notify_pid}")
            if resp.script == "setup-namespaces":
                _run_create_hooks(spec, req.id, bundle.path, resp.notify_pid)
            elif resp.script == "post-restore":
                progress.pid = resp.notify_pid
                _record(cdir, spec, bundle.path, bundle.rootfs, resp.notify_pid, cgroup)
            elif resp.script == "orphan-pts-master" and resp.fds:
                if console is not None:
                    from pyrun.linux import unixsock
                    unixsock.send_fds(console, b"/dev/ptmx", [resp.fds[0]])
                else:
                    progress.master = os.dup(resp.fds[0])
            else:
                notify_status(resp, copts)

        log.debug(f"restore {req.id}: criu RESTORE from {copts.image_path}")
        try:
            rpc.swrk(rpc.RESTORE, criu_opts, notified, tuple(extra_fds), into_cgroup)
        except PyrunError as e:
            raise criu_failure(e, copts.work_path or copts.image_path, LOG) from None
        if not progress.pid:
            raise PyrunError("criu failed: no post-restore notification")
        if req.pid_file:
            write_pid_file(req.pid_file, progress.pid)
    except BaseException as e:
        if progress.pid:
            try:
                os.kill(progress.pid, 9)
            except OSError:
                pass
        if cgroup is not None:
            try:
                cgroup.destroy()        # kills what is left first
            except OSError:
                pass
        if mounted:
            mounted = False
            if not _unmount(root):     # removing the tree would reach into the rootfs
                raise
        cdir.remove()
        if progress.master >= 0:
            os.close(progress.master)
        if isinstance(e, OSError):
            raise PyrunError(oserror_text(e)) from None
        raise
    finally:
        if mounted:
            _unmount(root)
        for fd in held:
            os.close(fd)
        if console is not None:
            console.close()
        cdir.close()
    log.debug(f"restore {req.id}: running as {progress.pid}")
    if req.detach:
        return 0
    return _foreground(req, progress)


def _foreground(req: CreateRequest, progress: _Restoring) -> int:
    """As `run` without -d: wait for the init, then delete the container."""
    from pyrun.container.delete import delete
    from pyrun.container.foreground import forward_signals, proxy_terminal, wait
    forward_signals(progress.pid)
    try:
        if progress.master >= 0:
            return proxy_terminal(progress.master, progress.pid)
        return wait(progress.pid)
    finally:
        delete(req.root, req.id, force=True)


def _unmount(root: str) -> bool:
    """Detach CRIU's root and remove its directory; False if it is still a
    mount (then nothing may remove the state directory's tree through it)."""
    from pyrun.linux import syscalls
    try:
        syscalls.umount2(root, 2)     # MNT_DETACH
    except OSError as e:
        log.warning(f"unmount {root}: {oserror_text(e)}")
    if os.path.ismount(root):
        return False
    try:
        os.rmdir(root)
    except OSError:
        pass
    return True


def _own_cgroups(pid: int) -> list[tuple[str, str]]:
    """(controllers, path) of /proc/<pid>/cgroup: CRIU's cgroup roots for the
    restored tree ("" on cgroup v2: every controller)."""
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _id, ctrl, path = line.rstrip("\n").split(":", 2)
            if ctrl.startswith("name="):
                continue
            out.append((ctrl, path))
    return out


def _run_create_hooks(spec: dict[str, Any], container_id: str, bundle: str, pid: int) -> None:
    """runc runs prestart and createRuntime when CRIU has set the namespaces up."""
    from pyrun.hooks import hook_state, hooks_of, run_hooks
    hooks = hooks_of(spec, "prestart") + hooks_of(spec, "createRuntime")
    if not hooks:
        return
    state = hook_state(spec, container_id, "created", pid, bundle)
    run_hooks("prestart", hooks_of(spec, "prestart"), state)
    run_hooks("createRuntime", hooks_of(spec, "createRuntime"), state)


def _record(cdir: ContainerDir, spec: dict[str, Any], bundle: str, rootfs: str, pid: int,
            cgroup: Any) -> None:
    """The state `create` would have written, for the restored init; no
    exec.fifo, so the container is `running`."""
    from pyrun import SPEC_VERSION
    from pyrun.linux.namespaces import NAMESPACES
    from pyrun.linux.proc import exe_id, start_time
    joined = mounts.joined_namespaces(spec)
    ns_paths = {ns["type"]: f"/proc/{pid}/ns/{NAMESPACES[ns['type']][1]}"
                for ns in (spec.get("linux") or {}).get("namespaces") or [] if ns["type"] not in joined}
    ns_paths.update(joined)
    cdir.save({
        "id": cdir.id,
        "oci_version": spec.get("ociVersion", SPEC_VERSION),
        "init_process_pid": pid,
        "init_process_start": start_time(pid),
        "init_process_exe": exe_id(pid),
        "created": _rfc3339_now(),
        "bundle": bundle,
        "rootfs": rootfs,
        "annotations": spec.get("annotations") or {},
        "owner": _owner(),
        "rootless": os.geteuid() != 0,
        **cgroup.record(),
        "namespace_paths": ns_paths,
        "restored": True,
        "config": spec,
    })
