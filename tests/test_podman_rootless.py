"""Rootless podman (Debian's 4.3) with `--runtime pyrun`, as an ordinary user.

The user is created for this module (useradd with subordinate ranges,
removed at the end).  Podman runs the runtime as root of its own user
namespace (made with newuidmap from those ranges), so pyrun sees euid 0 in
a user namespace: rootless by runc's rule, state under $XDG_RUNTIME_DIR,
devices bind-mounted, no cgroup on this host.  Everything podman writes
lives in the user's temporary home; there is no slirp4netns or pasta here,
so networking is off, and the VM lacks CAP_SYS_RESOURCE, so the rlimits
stay at 1024 (containers.conf default_ulimits).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PYRUN
from rootless_user import RootlessUser, create_user, remove_user
from waiting import eventually

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(shutil.which("podman") is None or shutil.which("newuidmap") is None
                       or shutil.which("setpriv") is None,
                       reason="needs podman, newuidmap and setpriv (install.sh installs them)"),
]

IMAGE = "localhost/pyrun-busybox:rootless"


class RootlessPodman:
    def __init__(self, user: RootlessUser) -> None:
        self.user = user
        self.dir = user.home / "podman"

    def setup(self, rootfs: Path) -> None:
        d, u = self.dir, self.user
        d.mkdir()
        (d / "containers.conf").write_text(f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
runtime_supports_json = ["crun", "runc", "pyrun"]

[engine.runtimes]
pyrun = ["{PYRUN}"]
""")
        (d / "storage.conf").write_text(f"""[storage]
driver = "vfs"
runroot = "{u.xdg}/containers"
graphroot = "{d}/storage"
rootless_storage_path = "{d}/storage"
""")
        (d / "registries.conf").write_text("")
        with tarfile.open(d / "rootfs.tar", "w") as tar:
            for entry in sorted(os.listdir(rootfs)):
                tar.add(os.path.join(rootfs, entry), arcname=entry)
        for path in (d, d / "containers.conf", d / "storage.conf", d / "registries.conf", d / "rootfs.tar"):
            os.chown(path, u.uid, u.gid)
        self("import", "--quiet", str(d / "rootfs.tar"), IMAGE)

    def env(self) -> dict[str, str]:
        d = self.dir
        return self.user.env(CONTAINERS_CONF=str(d / "containers.conf"),
                             CONTAINERS_STORAGE_CONF=str(d / "storage.conf"),
                             CONTAINERS_REGISTRIES_CONF=str(d / "registries.conf"))

    def __call__(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
        res = self.user.run(["podman", "--runtime", str(PYRUN), *args], env=self.env(),
                            timeout=timeout, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise AssertionError(f"podman {args} exited {res.returncode}\nstdout: {res.stdout}\n"
                                 f"stderr: {res.stderr}")
        return res

    def teardown(self) -> None:
        try:
            self("rm", "--all", "--force", "--time", "0", check=False)
        finally:
            self._kill_user_processes()

    def _kill_user_processes(self) -> None:
        """podman's pause process and conmons: every process of this user (and
        of its subordinate ids), by pid; they are ours."""
        for _ in range(50):
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and self.user.owns_pid(p)]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)


@pytest.fixture(scope="module")
def podman(rootfs_template: Path) -> Iterator[RootlessPodman]:
    user = create_user("p")
    pm = RootlessPodman(user)
    try:
        pm.setup(rootfs_template)
        yield pm
    finally:
        try:
            pm.teardown()
        finally:
            remove_user(user)


@pytest.fixture
def pm(podman: RootlessPodman) -> Iterator[RootlessPodman]:
    """The module's podman, with a check that no container or runtime state is left."""
    yield podman
    left: list[str] = []
    state: list[str] = []

    def nothing_left() -> bool:
        nonlocal left, state
        left = podman("ps", "--all", "--quiet", check=False).stdout.split()
        state = [n for n in _listdir(podman.user.state_root) if not n.startswith("@")]
        return not (left or state)
    with contextlib.suppress(AssertionError):       # the assert below names what is left
        eventually(nothing_left, 10, "podman's cleanup", interval=0.2)
    podman("rm", "--all", "--force", "--time", "0", check=False)
    assert not (left or state), f"left behind: containers={left} pyrun state={state}"


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _name() -> str:
    return "prl" + uuid.uuid4().hex[:10]


def test_run_as_an_ordinary_user(pm):
    r = pm("run", "--rm", "--network", "none", IMAGE,
           "sh", "-c", "id -u; cat /proc/self/uid_map; echo to-stderr >&2; exit 7", check=False)
    assert r.returncode == 7, r
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines[0] == ["0"]
    # podman's user namespace: root is the user, 1.. its subordinate range
    assert lines[1] == ["0", str(pm.user.uid), "1"]
    assert lines[2] == ["1", str(pm.user.subuid[0]), str(pm.user.subuid[1])]
    assert "to-stderr" in r.stderr


def test_detached_exec_stop_rm(pm):
    name = _name()
    pm("run", "-d", "--network", "none", "--name", name, IMAGE,
       "sh", "-c", "trap 'exit 42' TERM; echo ready > /tmp/ready; while :; do sleep 0.1; done")
    try:
        eventually(lambda: pm("exec", name, "test", "-e", "/tmp/ready", check=False).returncode == 0,
                   15, "the container to become ready", interval=0.1)
        info = json.loads(pm("inspect", name).stdout)[0]
        assert info["State"]["Status"] == "running" and info["OCIRuntime"] == str(PYRUN), info["State"]
        host_pid = info["State"]["Pid"]
        status = dict(line.split(":", 1) for line in Path(f"/proc/{host_pid}/status").read_text().splitlines())
        assert status["Uid"].split()[0] == str(pm.user.uid)       # container root is the user on the host
        assert (pm.user.state_root / info["Id"] / "state.json").exists()   # pyrun's state: $XDG_RUNTIME_DIR
        r = pm("exec", name, "sh", "-c", "echo exec-out; cat /tmp/ready; exit 5", check=False)
        assert (r.returncode, r.stdout) == (5, "exec-out\nready\n"), r
        pm("stop", "--time", "10", name)
        info = json.loads(pm("inspect", name).stdout)[0]
        assert (info["State"]["Status"], info["State"]["ExitCode"]) == ("exited", 42), info["State"]
        pm("rm", name)
    finally:
        pm("rm", "--force", "--time", "0", name, check=False)


def test_run_and_exec_with_tty(pm):
    """-t: conmon's console socket, a devpts of the container's own (gid=5 is mapped)."""
    r = pm("run", "--rm", "-t", "--network", "none", IMAGE, "sh", "-c", "tty; exit 4", check=False)
    assert r.returncode == 4, r
    assert r.stdout.replace("\r", "").strip() == "/dev/pts/0", r
    name = _name()
    pm("run", "-d", "--network", "none", "--name", name, IMAGE, "sleep", "100")
    try:
        out = pm("exec", "-t", name, "sh", "-c", "tty; id -u").stdout.replace("\r", "").split()
        assert out[0].startswith("/dev/pts/") and out[1] == "0", out
    finally:
        pm("rm", "--force", "--time", "0", name, check=False)
