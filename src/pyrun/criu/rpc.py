"""CRIU's RPC over `criu swrk`: the few protobuf messages pyrun needs, encoded
by hand (proto2 wire format: varints and length-delimited fields), so no
protobuf library and no generated code are needed.

Why RPC and not `criu dump|restore` on the command line: only the RPC gives the
caller the notifications runc relies on: `setup-namespaces` (the restored
init's pid, for the prestart/createRuntime hooks), `post-restore` (the new pid,
before the process runs on), and `orphan-pts-master` (the pty master of a
terminal container, sent on to --console-socket); the CLI has none of them.
Field numbers are those of CRIU's images/rpc.proto.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from pyrun.errors import PyrunError
from pyrun.linux import unixsock

# criu_req_type
EMPTY, DUMP, RESTORE, CHECK, PRE_DUMP, PAGE_SERVER, NOTIFY = 0, 1, 2, 3, 4, 5, 6
FEATURE_CHECK, VERSION = 9, 10
TYPE_NAMES = {0: "EMPTY", 1: "DUMP", 2: "RESTORE", 3: "CHECK", 4: "PRE_DUMP", 5: "PAGE_SERVER",
              6: "NOTIFY", 9: "FEATURE_CHECK", 10: "VERSION"}
# criu_cg_mode, by runc's --manage-cgroups-mode words ("" is CRIU's default, soft)
CG_MODES = {"": 6, "soft": 3, "full": 4, "strict": 5, "ignore": 0}

# criu_opts field numbers (rpc.proto)
OPTS = {
    "images_dir_fd": 1, "pid": 2, "leave_running": 3, "ext_unix_sk": 4, "tcp_established": 5,
    "evasive_devices": 6, "shell_job": 7, "file_locks": 8, "log_level": 9, "log_file": 10,
    "ps": 11, "notify_scripts": 12, "root": 13, "parent_img": 14, "track_mem": 15,
    "auto_dedup": 16, "work_dir_fd": 17, "link_remap": 18, "ext_mnt": 23, "manage_cgroups": 24, "cg_root": 25,
    "rst_sibling": 26, "inherit_fd": 27, "external": 37, "empty_ns": 38, "join_ns": 39,
    "freeze_cgroup": 44, "tcp_skip_in_flight": 46, "lazy_pages": 48, "status_fd": 49, "orphan_pts_master": 50, "config_file": 51,
    "manage_cgroups_mode": 34,
}

Fields = list  # of (field number, value): int/bool -> varint, str/bytes -> bytes, list -> message


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1          # int32 negatives: ten bytes of two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(fields: Fields) -> bytes:
    out = bytearray()
    for number, value in fields:
        if isinstance(value, (bool, int)):
            out += _varint(number << 3) + _varint(int(value))
        else:
            raw = value.encode() if isinstance(value, str) else (
                encode(value) if isinstance(value, list) else bytes(value))
            out += _varint(number << 3 | 2) + _varint(len(raw)) + raw
    return bytes(out)


def decode(data: bytes) -> dict[int, list[Any]]:
    """field number -> its values (ints, or bytes for length-delimited ones)."""
    out: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            if i >= len(data):
                raise PyrunError("criu: truncated RPC message")
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value: Any = varint()
        elif wire == 2:
            length = varint()
            value, i = data[i:i + length], i + length
        elif wire == 5:
            value, i = int.from_bytes(data[i:i + 4], "little"), i + 4
        elif wire == 1:
            value, i = int.from_bytes(data[i:i + 8], "little"), i + 8
        else:
            raise PyrunError(f"criu: unsupported RPC wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _int32(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class Response:
    """A criu_resp: type, success, and what pyrun reads of the rest."""

    def __init__(self, raw: dict[int, list[Any]], fds: list[int]) -> None:
        self.type = raw.get(1, [0])[0]
        self.success = bool(raw.get(2, [0])[0])
        self.errno = _int32(raw.get(7, [0])[0])
        self.errmsg = raw.get(9, [b""])[0].decode(errors="replace")
        self.fds = fds
        notify = decode(raw[5][0]) if 5 in raw else {}
        self.script = notify.get(1, [b""])[0].decode(errors="replace")
        self.notify_pid = _int32(notify.get(2, [0])[0])
        restore = decode(raw[4][0]) if 4 in raw else {}
        self.restored_pid = _int32(restore.get(1, [0])[0])


def opts(**values: Any) -> Fields:
    """criu_opts from keyword names (OPTS); None and False-y repeated fields are left out."""
    fields: Fields = []
    for name, value in values.items():
        if value is None:
            continue
        number = OPTS[name]
        if isinstance(value, tuple):       # a repeated field
            fields += [(number, item) for item in value]
        else:
            fields.append((number, value))
    return fields


def swrk(req_type: int, criu_opts: Fields, on_notify: Callable[[Response], None],
         extra_fds: tuple[int, ...] = (), before_request: Callable[[int], None] | None = None,
         binary: str = "criu") -> Response:
    """Run one request in `criu swrk 3`, a child of ours with our stdio.

    `extra_fds` become criu's fds 4, 5, ... (inherit_fd). `before_request(pid)`
    runs once criu exists and before it has the request (runc puts criu into
    the container's cgroup then). Every NOTIFY goes to `on_notify` and is
    acknowledged. Returns the final response; raises on failure."""
    ours, theirs = unixsock.socketpair(unixsock.SOCK_SEQPACKET)
    try:
        pid = _spawn(binary, theirs.fileno(), extra_fds)
    except OSError as e:
        ours.close()
        theirs.close()
        from pyrun.errors import strerror
        raise PyrunError(f"exec: \"{binary}\": {strerror(e.errno)}") from None
    theirs.close()
    reaped = False
    try:
        if before_request is not None:
            before_request(pid)
        ours.send(encode([(1, req_type), (2, criu_opts)]))
        while True:
            try:
                data, fds = unixsock.recv_fds(ours, 1 << 20, 8)
            except OSError as e:
                raise PyrunError(f"criu failed: {e.strerror}") from None
            if not data:
                raise PyrunError(f"criu failed: type {TYPE_NAMES.get(req_type)}: unexpected EOF")
            resp = Response(decode(data), fds)
            if not resp.success:
                for fd in fds:
                    os.close(fd)
                detail = f": {resp.errmsg}" if resp.errmsg else ""
                raise PyrunError(f"criu failed: type {TYPE_NAMES.get(resp.type, resp.type)} "
                                 f"errno {resp.errno}{detail}")
            if resp.type == NOTIFY:
                try:
                    on_notify(resp)
                finally:
                    for fd in fds:
                        os.close(fd)
                ours.send(encode([(1, NOTIFY), (3, True)]))
                continue
            if resp.type != req_type:
                raise PyrunError(f"criu: unexpected response type {resp.type}")
            break
        ours.close()
        _, status = os.waitpid(pid, 0)
        reaped = True
        # After PRE_DUMP, criu waits for the next request: our close ends it, whatever its status.
        if req_type != PRE_DUMP and os.waitstatus_to_exitcode(status) != 0:
            raise PyrunError(f"criu failed: exit status {os.waitstatus_to_exitcode(status)}")
        return resp
    finally:
        ours.close()
        if not reaped:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _spawn(binary: str, sock_fd: int, extra_fds: tuple[int, ...]) -> int:
    """fork + exec `criu swrk 3` with `sock_fd` at 3 and `extra_fds` from 4 on;
    everything else of ours (close-on-exec) stays behind."""
    import shutil
    path = shutil.which(binary)
    if path is None:
        raise FileNotFoundError(2, "executable file not found in $PATH")
    sources = (sock_fd,) + tuple(extra_fds)
    pid = os.fork()
    if pid == 0:
        try:
            high = [os.dup2(fd, 100 + i, inheritable=False) for i, fd in enumerate(sources)]
            for target, fd in enumerate(high, start=3):
                os.dup2(fd, target, inheritable=True)
            os.closerange(3 + len(high), 100 + len(high))
            os.execv(path, [binary, "swrk", "3"])
        finally:
            os._exit(127)
    return pid
