"""The options `checkpoint` and `restore` share, checked as runc checks them:
before CRIU runs, so a bad flag or --parent-path touches no container."""
from __future__ import annotations

import os
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import PyrunError, strerror
from pyrun.records import dataclass

CLONE_NEWNET = 0x40000000
EMPTY_NS = {"network": CLONE_NEWNET}     # runc accepts only the network namespace


@dataclass
class CriuOptions:
    image_path: str
    work_path: str = ""
    parent_path: str = ""
    leave_running: bool = False
    tcp_established: bool = False
    tcp_skip_in_flight: bool = False
    link_remap: bool = False
    ext_unix_sk: bool = False
    shell_job: bool = False
    file_locks: bool = False
    pre_dump: bool = False
    manage_cgroups_mode: str = ""
    empty_ns: int = CLONE_NEWNET        # runc never restores the network's properties itself
    auto_dedup: bool = False
    lazy_pages: bool = False
    status_fd: int = -1
    page_server: tuple[str, int] | None = None


def from_flags(opts: dict[str, Any]) -> CriuOptions:
    """CriuOptions from parsed flags (keys as cli.parser makes them); the image
    directory is created, as runc creates it, once every flag is known good."""
    from pyrun.criu.rpc import CG_MODES
    mode = opts.get("manage_cgroups_mode") or ""
    if mode not in CG_MODES:
        raise PyrunError("invalid manage-cgroups-mode value")
    empty = CLONE_NEWNET
    for ns in opts.get("empty_ns") or []:
        if ns not in EMPTY_NS:
            raise PyrunError(f'namespace "{ns}" is not supported')
        empty |= EMPTY_NS[ns]
    page_server = None
    if opts.get("page_server"):
        page_server = _page_server(opts["page_server"])
    status_fd = opts.get("status_fd", -1)
    if opts.get("lazy_pages") and status_fd != -1:
        _check_status_fd(status_fd)
    image_path = os.path.abspath(opts.get("image_path") or os.path.join(os.getcwd(), "checkpoint"))
    parent = opts.get("parent_path") or ""
    if parent:
        _check_parent(image_path, parent)
    try:
        os.makedirs(image_path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise PyrunError(f"mkdir {image_path}: {strerror(e.errno)}") from None
    work = opts.get("work_path") or ""
    return CriuOptions(image_path=image_path, work_path=os.path.abspath(work) if work else "",
                       parent_path=parent, leave_running=bool(opts.get("leave_running")),
                       tcp_established=bool(opts.get("tcp_established")),
                       tcp_skip_in_flight=bool(opts.get("tcp_skip_in_flight")),
                       link_remap=bool(opts.get("link_remap")),
                       ext_unix_sk=bool(opts.get("ext_unix_sk")), shell_job=bool(opts.get("shell_job")),
                       file_locks=bool(opts.get("file_locks")), pre_dump=bool(opts.get("pre_dump")),
                       manage_cgroups_mode=mode, empty_ns=empty, auto_dedup=bool(opts.get("auto_dedup")),
                       lazy_pages=bool(opts.get("lazy_pages")), status_fd=status_fd,
                       page_server=page_server)


def _page_server(value: str) -> tuple[str, int]:
    """ADDRESS:PORT, as Go's net.SplitHostPort takes it ([v6]:port too)."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""
    if not sep or not host or not port:
        raise PyrunError("Use --page-server ADDRESS:PORT to specify page server")
    if not port.isdigit():
        raise PyrunError("Invalid port number")
    return host, int(port)


def _check_status_fd(fd: int) -> None:
    import fcntl
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as e:
        raise PyrunError(f"invalid --status-fd argument {fd}: {strerror(e.errno)}") from None
    if not flags & (os.O_WRONLY | os.O_RDWR):
        raise PyrunError(f"invalid --status-fd argument {fd}: not writable")


def _check_parent(image_path: str, parent: str) -> None:
    """runc: relative to the image directory, and an existing directory."""
    if os.path.isabs(parent):
        raise PyrunError("--parent-path must be relative")
    real = os.path.normpath(os.path.join(image_path, parent))   # Go: filepath.Join cleans
    try:
        st = os.stat(real)
    except OSError as e:
        raise PyrunError(f"invalid --parent-path: stat {real}: {strerror(e.errno)}") from None
    import stat
    if not stat.S_ISDIR(st.st_mode):
        raise PyrunError(f"invalid --parent-path: stat {real}: not a directory")


def log_tail(directory: str, name: str, context: int = 5, limit: int = 12) -> list[str]:
    """The lines of CRIU's log around its "Error" lines (runc quotes them the
    same way): each error with the few lines before it, at most `limit` lines."""
    try:
        with open(os.path.join(directory, name), errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    picked: list[int] = []
    for n, line in enumerate(lines):
        if "Error" in line:
            picked += [i for i in range(max(0, n - context), n + 1) if not picked or i > picked[-1]]
    return [f"{i + 1}:{lines[i]}" for i in picked][-limit:]


def criu_failure(error: PyrunError, directory: str, name: str) -> PyrunError:
    """CRIU's own reason in pyrun's error: its last Error line, and the
    surrounding log lines as warnings (as runc prints them)."""
    from pyrun import log
    tail = log_tail(directory, name)
    path = os.path.join(directory, name)
    if tail:
        log.warning(f'--- Quoting "{path}"')
        for line in tail:
            log.warning(line)
        log.warning("---")
    errors = [line.split("): ", 1)[-1].strip() for line in tail if "Error (" in line]
    reason = f": {errors[-1]}" if errors else ""
    return PyrunError(f"{error}{reason} (log: {path})", error.exit_code)
