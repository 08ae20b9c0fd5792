"""`checkpoint`: dump a running container's processes with CRIU, then (unless
--leave-running or --pre-dump) destroy it, as runc does."""
from __future__ import annotations

import os
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun import log
from pyrun.criu import mounts, rpc
from pyrun.criu.options import CriuOptions, criu_failure
from pyrun.errors import PyrunError
from pyrun.state.status import PAUSED, RUNNING, status_of
from pyrun.state.store import ContainerDir

DESCRIPTORS = "descriptors.json"      # the init's fds 0-2, for restore's inherit-fd (runc's file)
LOG = "dump.log"
DEFAULT_CONFIG = "/etc/criu/runc.conf"   # CRIU ignores a missing file


def checkpoint(root: str, container_id: str, flags: dict[str, Any]) -> None:
    """`flags` as the command line gave them: checked (runc's order) once the
    container is known to exist and to be checkpointable, before CRIU runs."""
    from pyrun.criu.options import from_flags
    with ContainerDir.open(root, container_id) as cdir:
        state = cdir.load()
        status = status_of(cdir, state)
        if status not in (RUNNING, PAUSED):
            raise PyrunError(f"Container cannot be checkpointed in {status} state")
        copts = from_flags(flags)
        spec = state.get("config") or {}
        pid = state["init_process_pid"]
        log_dir = copts.work_path or copts.image_path
        fds = _open_dirs(copts)
        try:
            opts = _dump_opts(state, spec, pid, copts, fds)
            if not copts.pre_dump:
                _write_descriptors(copts.image_path, pid)
            req_type = rpc.PRE_DUMP if copts.pre_dump else rpc.DUMP
            log.debug(f"checkpoint {container_id}: criu {rpc.TYPE_NAMES[req_type]} of {pid} "
                      f"into {copts.image_path}")
            try:
                rpc.swrk(req_type, opts, lambda resp: notify_status(resp, copts))
            except PyrunError as e:
                raise criu_failure(e, log_dir, LOG) from None
        finally:
            for fd in fds.values():
                os.close(fd)
        if not copts.leave_running and not copts.pre_dump:
            from pyrun.container.delete import destroy
            try:
                destroy(cdir, state)
            except PyrunError as e:     # runc: a warning, the checkpoint stands
                log.warning(str(e))
        log.debug(f"checkpoint {container_id}: done")


def _open_dirs(copts: CriuOptions) -> dict[str, int]:
    """The image (and work) directory as fds: CRIU opens them through our /proc/<pid>/fd."""
    fds = {"images_dir_fd": os.open(copts.image_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)}
    if copts.work_path:
        try:
            os.makedirs(copts.work_path, mode=0o700, exist_ok=True)
            fds["work_dir_fd"] = os.open(copts.work_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            os.close(fds["images_dir_fd"])
            from pyrun.errors import oserror_text
            raise PyrunError(oserror_text(e)) from None
    return fds


def common_opts(copts: CriuOptions, fds: dict[str, int], log_file: str,
                spec: dict[str, Any]) -> dict[str, Any]:
    """The criu_opts checkpoint and restore share (runc sets the same ones)."""
    opts: dict[str, Any] = dict(fds)
    opts["config_file"] = config_file(spec)
    opts.update(log_level=4, log_file=log_file, manage_cgroups=True,
                manage_cgroups_mode=rpc.CG_MODES[copts.manage_cgroups_mode], notify_scripts=True,
                shell_job=copts.shell_job, tcp_established=copts.tcp_established,
                ext_unix_sk=copts.ext_unix_sk, file_locks=copts.file_locks, empty_ns=copts.empty_ns,
                orphan_pts_master=True, auto_dedup=copts.auto_dedup, lazy_pages=copts.lazy_pages)
    return opts


def config_file(spec: dict[str, Any]) -> str | None:
    """CRIU's configuration file, which overrides the RPC's options: the
    `org.criu.config` annotation's (empty: none), else runc's default file, so
    a host set up for runc (podman writes it) configures pyrun's CRIU alike."""
    annotations = spec.get("annotations") or {}
    if "org.criu.config" in annotations:
        return annotations["org.criu.config"] or None
    return DEFAULT_CONFIG


def _dump_opts(state: dict[str, Any], spec: dict[str, Any], pid: int, copts: CriuOptions,
               fds: dict[str, int]) -> list[Any]:
    opts = common_opts(copts, fds, LOG, spec)
    opts.update(pid=pid, root=state["rootfs"], leave_running=copts.leave_running,
                tcp_skip_in_flight=copts.tcp_skip_in_flight, link_remap=copts.link_remap)
    external = []
    for ns_type, path in mounts.joined_namespaces(spec).items():
        if ns_type in ("network", "pid"):     # the caller's: kept out of the image
            external.append(f"{mounts.NS_NAMES[ns_type]}[{os.stat(path).st_ino}]:{mounts.ns_key(ns_type)}")
    opts["external"] = tuple(external)
    from pyrun.cgroups.manager import load
    cgroup = load(state)
    freezer = cgroup.freezer_dir()      # CRIU freezes the tree with v1's freezer, else the v2 cgroup
    if freezer:
        opts["freeze_cgroup"] = freezer
    if copts.page_server:
        opts["ps"] = [(1, copts.page_server[0]), (2, copts.page_server[1])]
    if copts.parent_path:
        opts.update(parent_img=copts.parent_path, track_mem=True)
    if copts.pre_dump:
        opts["track_mem"] = True
    else:
        pairs = mounts.external_mounts(spec, state["rootfs"], cgroup.mount_binds(), restore=False)
        pairs += mounts.masked_files(spec, pid)
        opts["ext_mnt"] = mounts.ext_mnt_fields(pairs)
    return rpc.opts(**opts)


def notify_status(resp: Any, copts: CriuOptions) -> None:
    """CRIU >= 3.15 reports lazy-pages readiness as a notification (runc then
    writes the \\0 to --status-fd itself, as older CRIUs did)."""
    log.debug(f"criu notify: {resp.script}")
    if resp.script == "status-ready" and copts.status_fd != -1:
        try:
            os.write(copts.status_fd, b"\0")
            os.close(copts.status_fd)
        except OSError as e:
            log.warning(f"can't write \\0 to status fd: {e.strerror}")
        copts.status_fd = -1


def _write_descriptors(image_path: str, pid: int) -> None:
    import json
    names = []
    for fd in range(3):
        try:
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            names.append("/dev/null")
    path = os.path.join(image_path, DESCRIPTORS)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(names, f)
