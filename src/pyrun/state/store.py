"""Per-container state directories, state.json and locking.

<root>/            0700
<root>/<id>/       0711   state.json, exec.fifo (while created)

mkdir is the atomic claim on an ID; an flock on the directory serialises
commands acting on one container.  state.json is replaced atomically.
Nothing here follows a symlink: <root>/<id> or a file in it replaced by one
(to a forged state naming a host process and cgroup) is no container, as
runc's securejoin makes it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun import errors
from pyrun.errors import PyrunError, strerror
from pyrun.state import jsonio      # not json: re and enum for every command (~3 ms)

_NOT_OURS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})   # missing, or a symlink
STATE_FILE = "state.json"
FIFO = "exec.fifo"
PENDING_FILE = "cgroup.json"   # create's cgroup paths until state.json exists: a killed create's leftovers
# runc's ID rule, ^[\w+\-.]+$ in ASCII, without importing `re` on every command
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def _is_valid_id(name: str) -> bool:
    return bool(name) and _ID_CHARS.issuperset(name) and name not in (".", "..")


def validate_id(container_id: str) -> None:
    if not _is_valid_id(container_id):
        raise PyrunError(errors.INVALID_ID)


def default_root() -> str:
    """runc's rule (pyrun.rootless): $XDG_RUNTIME_DIR/pyrun for rootless callers.

    That directory is created sticky (0700|S_ISVTX) as runc does, so the XDG
    cleaner does not remove it while containers are around."""
    from pyrun.rootless import honour_xdg_runtime_dir
    if not honour_xdg_runtime_dir():
        return "/run/pyrun"
    root = os.path.join(os.environ["XDG_RUNTIME_DIR"], "pyrun")
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o1700)
    except OSError as e:
        raise PyrunError(f"unable to create the state root {root}: {errors.strerror(e.errno)}") from None
    return root


class ContainerDir:
    """An open, locked container directory."""

    def __init__(self, root: str, container_id: str, fd: int) -> None:
        self.root = root
        self.id = container_id
        self.path = os.path.join(root, container_id)
        self.fd = fd

    # -- claiming and opening --------------------------------------------
    @classmethod
    def create(cls, root: str, container_id: str) -> "ContainerDir":
        validate_id(container_id)
        path = os.path.join(root, container_id)
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise PyrunError(errors.ID_IN_USE) from None
        except OSError as e:   # e.g. an ordinary user and /run/pyrun
            raise PyrunError(f"mkdir {e.filename}: {errors.strerror(e.errno)}") from None
        os.chmod(path, 0o711)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(root, container_id, fd)

    @classmethod
    def open(cls, root: str, container_id: str, lock: bool = True) -> "ContainerDir":
        validate_id(container_id)
        path = os.path.join(root, container_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in _NOT_OURS:
                raise PyrunError(errors.NOT_EXIST) from None
            raise
        if lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(root, container_id, fd)

    # -- contents ----------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """state.json, if it is a regular file (not a symlink, nor a fifo
        that would block us) about this very container."""
        fd = self.open_file(STATE_FILE)
        if fd < 0:
            raise PyrunError(errors.NOT_EXIST)
        with os.fdopen(fd) as f:
            state = jsonio.loads(f.read())
        if not isinstance(state, dict) or state.get("id") != self.id:
            raise PyrunError(errors.NOT_EXIST)
        return state

    def open_file(self, name: str) -> int:
        """A regular file of this directory for reading, or -1."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as e:
            if e.errno in _NOT_OURS:
                return -1
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return -1
        return fd

    def save(self, state: dict[str, Any], name: str = STATE_FILE) -> None:
        tmp = f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=self.fd)
        with os.fdopen(fd, "w") as f:
            f.write(jsonio.dumps(state))
        os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def has_fifo(self) -> bool:
        try:
            os.stat(FIFO, dir_fd=self.fd, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False

    def make_fifo(self) -> None:
        os.mkfifo(FIFO, 0o622, dir_fd=self.fd)
        os.chmod(FIFO, 0o622, dir_fd=self.fd)

    def remove_fifo(self) -> None:
        try:
            os.unlink(FIFO, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def fifo_path_fd(self) -> int:
        """An O_PATH fd on exec.fifo itself, for the init to reopen for writing
        from inside the container. Not the directory: through the init's
        /proc/<pid>/fd a directory fd walks `..` up to the host's / (the
        CVE-2024-21626 class); a fifo leads nowhere."""
        return os.open(FIFO, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)

    def remove(self) -> None:
        try:
            _remove_tree(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "ContainerDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unlink_stray(root: str, container_id: str) -> None:
    """runc's `delete` of an ID that is no container removes <root>/<id>
    all the same: a symlink (or file) there is unlinked, never followed."""
    path = os.path.join(root, container_id)
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_tree(path: str) -> None:
    """shutil.rmtree for a container directory (a few files, rarely a
    subdirectory), without importing shutil and, through it, bz2 and lzma (~2 ms
    of every delete). Symlinks are unlinked, never followed."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(os.path.join(path, entry.name))
            else:
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
    finally:
        os.close(fd)
    os.rmdir(path)


def validated_cache(root: str) -> str:
    """A file beside the containers, under a name no ID can take."""
    return os.path.join(root, "@validated-configs")


def list_ids(root: str, missing_ok: bool = True) -> list[str]:
    """The container IDs under `root`; a missing root has none unless
    `missing_ok` is False (runc 1.5's list: a --root given must exist)."""
    try:
        return sorted(e.name for e in os.scandir(root)
                      if e.is_dir(follow_symlinks=False) and _is_valid_id(e.name))
    except FileNotFoundError:
        if missing_ok:
            return []
        raise PyrunError(f"open {root}: {strerror(errno.ENOENT)}") from None
    except OSError as e:
        raise PyrunError(f"open {root}: {strerror(e.errno)}") from None


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, as runc does: callers read it the moment create exits."""
    path = os.path.abspath(path)
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            os.unlink(tmp)
            fd = os.open(tmp, flags, 0o666)
    except OSError as e:       # runc's wording: open /missing/dir/.x: no such file or directory
        raise PyrunError(f"open {tmp}: {strerror(e.errno)}") from None
    try:
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise PyrunError(f"rename {tmp} {path}: {strerror(e.errno)}") from None
