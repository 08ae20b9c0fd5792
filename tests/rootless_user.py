"""An ordinary user for rootless tests: created with subordinate id ranges,
used through setpriv, removed afterwards with /etc left as it was found.

useradd allocates the /etc/subuid and /etc/subgid ranges itself (Debian's
login.defs SUB_UID_*), under its own locks, so parallel runs never share a
range.  Teardown runs userdel, then removes any line still naming the user
(nothing else: other runs may be editing the same files) and puts the
shadow-utils backup files (passwd- ...) back byte for byte.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import PYRUN, Bundle, _mounts
from pyrun.tools.busybox_bundle import make_config
from waiting import eventually

_DB = ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")
_BACKUPS = [f"/etc/{name}-" for name in _DB]


@dataclass
class RootlessUser:
    name: str
    uid: int
    gid: int
    home: Path
    subuid: tuple[int, int]      # (first host id, count)
    subgid: tuple[int, int]
    backups: dict[str, bytes | None] = field(default_factory=dict)   # /etc/*- as found

    @property
    def xdg(self) -> Path:
        return self.home / "xdg"

    @property
    def state_root(self) -> Path:
        return self.xdg / "pyrun"

    def env(self, **extra: str) -> dict[str, str]:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "XDG_RUNTIME_DIR": str(self.xdg), "LANG": "C.UTF-8"}
        env.update(extra)
        return env

    def command(self, args: list[str]) -> list[str]:
        """`args` run as this user, with no supplementary groups."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--", *args]

    def run(self, args: list[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(self.command(args), env=env or self.env(), cwd=str(self.home), **kw)

    def owns_pid(self, pid: str) -> bool:
        """A process running as this user or as one of its subordinate uids."""
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        uid = int(line.split()[1])
                        first, count = self.subuid
                        return uid == self.uid or first <= uid < first + count
        except OSError:
            pass
        return False


def _ranges(path: str, name: str) -> list[tuple[int, int]]:
    out = []
    with open(path) as f:
        for line in f:
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[0] == name:
                out.append((int(fields[1]), int(fields[2])))
    return out


def _free_range(path: str) -> int:
    top = 100000
    with open(path) as f:
        for line in f:
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                top = max(top, int(fields[1]) + int(fields[2]))
    return top


def create_user(tag: str) -> RootlessUser:
    backups = {p: Path(p).read_bytes() if os.path.exists(p) else None for p in _BACKUPS}
    name = f"prl{tag}{os.getpid()}"[:31]
    home = Path(tempfile.mkdtemp(prefix=f"pyrun-t-{name}-", dir="/tmp"))
    try:
        subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                        "--comment", "pyrun rootless test user", name], check=True, capture_output=True)
        for kind, flag in (("subuid", "--add-subuids"), ("subgid", "--add-subgids")):
            if not _ranges(f"/etc/{kind}", name):        # a host whose useradd does not allocate them
                first = _free_range(f"/etc/{kind}")
                subprocess.run(["usermod", flag, f"{first}-{first + 65535}", name], check=True, capture_output=True)
        import pwd
        pw = pwd.getpwnam(name)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        home.chmod(0o755)
        user = RootlessUser(name, pw.pw_uid, pw.pw_gid, home, _ranges("/etc/subuid", name)[0],
                            _ranges("/etc/subgid", name)[0], backups)
        user.xdg.mkdir(mode=0o700)
        os.chown(user.xdg, user.uid, user.gid)
        probe = user.run([str(PYRUN), "--version"])
        if probe.returncode != 0:
            raise RuntimeError(f"{PYRUN} cannot be run by an ordinary user (every directory on the "
                               f"path must be searchable by others): {probe.stderr.strip()}")
        return user
    except BaseException:
        _remove(name, home, backups)
        raise


def remove_user(user: RootlessUser) -> None:
    _remove(user.name, user.home, user.backups)


def _remove(name: str, home: Path, backups: dict[str, bytes | None]) -> None:
    subprocess.run(["userdel", name], capture_output=True)
    for db in _DB:
        path = Path("/etc") / db
        if not path.exists():
            continue
        text = path.read_text()
        kept = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(name + ":"))
        if kept != text:          # userdel leaves subordinate ranges on some versions
            path.write_text(kept)
    for path, content in backups.items():
        if content is None:
            Path(path).unlink(missing_ok=True)
        else:
            Path(path).write_bytes(content)
    mail = Path("/var/mail") / name
    if mail.exists():
        mail.unlink()
    shutil.rmtree(home, ignore_errors=True)


def rootless_config(user: RootlessUser, args: list[str]) -> dict[str, Any]:
    """The busybox test config made rootless the way `spec --rootless` does."""
    config = make_config(args)
    linux = config["linux"]
    linux.pop("resources", None)
    linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    linux["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": user.gid, "size": 1}]
    for m in config["mounts"]:
        m["options"] = [o for o in m.get("options") or [] if not o.startswith(("uid=", "gid="))]
    return config


def user_bundle(user: RootlessUser, rootfs_template: Path, args: list[str]) -> Bundle:
    """A bundle the user owns, in its home."""
    path = user.home / f"bundle-{uuid.uuid4().hex[:8]}"
    shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, user.uid, user.gid)
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), user.uid, user.gid, follow_symlinks=False)
    bundle = Bundle(path, rootless_config(user, args)).write()
    os.chown(path / "config.json", user.uid, user.gid)
    return bundle


class RootlessPyrun:
    """`pyrun` run as the test user, with its default (XDG) state root."""

    def __init__(self, user: RootlessUser) -> None:
        self.user = user
        self.created: list[str] = []

    def new_id(self) -> str:
        cid = f"prl-{uuid.uuid4().hex[:10]}"
        self.created.append(cid)
        return cid

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess:
        # Files, not pipes: a detached container keeps its stdio open.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            res = self.user.run([str(PYRUN), *args], env=env, capture_output=False,
                                stdout=out, stderr=err, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            res.stdout, res.stderr = out.read(), err.read()
        if check and res.returncode != 0:
            raise AssertionError(f"pyrun {args} as {self.user.name} exited {res.returncode}\n"
                                 f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def cleanup(self) -> None:
        for cid in self.created:
            self("delete", "--force", cid, check=False)


@dataclass
class UserSnapshot:
    mounts: set[str]
    processes: set[str]
    state: set[str]

    @classmethod
    def take(cls, user: RootlessUser) -> "UserSnapshot":
        root = user.state_root
        state = {n for n in os.listdir(root) if not n.startswith("@")} if root.exists() else set()
        procs = {p for p in os.listdir("/proc") if p.isdigit() and user.owns_pid(p)}
        return cls(_mounts(), procs, state)

    def leaks_since(self, before: "UserSnapshot") -> dict[str, set[str]]:
        leaks = {k: getattr(self, k) - getattr(before, k) for k in ("mounts", "processes", "state")}
        return {k: v for k, v in leaks.items() if v}


def wait_for_no_user_leaks(user: RootlessUser, before: UserSnapshot, timeout: float = 5.0) -> dict[str, set[str]]:
    leaks: dict[str, set[str]] = {}

    def gone() -> bool:
        nonlocal leaks
        leaks = UserSnapshot.take(user).leaks_since(before)
        return not leaks
    with contextlib.suppress(AssertionError):      # the caller reports what is left
        eventually(gone, timeout, "no leaks", interval=0.05)
    return leaks
