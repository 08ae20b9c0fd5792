"""pyrun under podman (Debian's 4.3, through conmon), as root.

Everything podman owns lives under one temporary directory: storage (--root,
vfs), run root, libpod tmp dir (conmon's exit files, the events log, the file
locks), and a private containers.conf (CONTAINERS_CONF) and storage.conf
(CONTAINERS_STORAGE_CONF); no host configuration is read.

The OCI runtime keeps its default --root (/run/runc, /run/pyrun): podman 4.3
does pass `--runtime-flag root=...` to conmon and its own runtime calls, but
not to the exit command (`podman container cleanup`) conmon runs when the
container exits, whose `delete` then looks in the default root and the state
is never removed. The leak check looks for our containers' ids there. Networking is off (netns "none"). Containers
get their cgroups under --cgroup-parent /pyrun-podmantest-<pid>, removed at
teardown.

containers.conf lists pyrun in runtime_supports_json: only then does podman
ask the runtime for a JSON error log (`--log-format=json --log <rundir>/oci-log`)
and read a failing create's message from it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PYRUN
from daemon_cleanup import cgroup_dirs_named, empty_and_remove_cgroups, kill_by_cmdline, unmount_below
from waiting import eventually

RUNC = "/usr/sbin/runc"
PODMAN = shutil.which("podman")
IMAGE = "localhost/pyrun-busybox:test"
CGROUP_PARENT = f"pyrun-podmantest-{os.getpid()}"
# Fixed paths podman or conmon might create outside our directory; removed at
# teardown if this run created them and they are empty.
_FIXED_DIRS = ("/run/runc", "/run/pyrun", "/run/libpod", "/run/containers/storage", "/run/containers",
               "/var/lib/containers/storage", "/var/lib/containers/cache", "/var/lib/containers")

_BLOB_CACHE_FILES = ("/var/lib/containers/cache/blob-info-cache-v1.boltdb",
                     "/var/lib/containers/cache/blob-info-cache-v1.sqlite")
RUNTIME_ROOTS = ("/run/runc", "/run/pyrun")
RUNTIMES = [pytest.param(str(PYRUN), id="pyrun"), pytest.param(RUNC, id="runc")]

pytestmark = pytest.mark.skipif(PODMAN is None or shutil.which("conmon") is None,
                                reason="podman/conmon not installed (install.sh installs podman)")


def _cgroup_dirs() -> list[str]:
    """Every cgroup directory at or below our cgroup parent, deepest first."""
    return cgroup_dirs_named(CGROUP_PARENT)


class Podman:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.conf = workdir / "containers.conf"
        self.storage_conf = workdir / "storage.conf"
        self._fixed_before = {d for d in _FIXED_DIRS if os.path.lexists(d)}
        self._roots_before = {d for d in RUNTIME_ROOTS if os.path.lexists(d)}

    def setup(self) -> None:
        w = self.workdir
        for d in ("storage", "run", "libpod", "net"):
            (w / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
log_driver = "k8s-file"

[network]
network_config_dir = "{w}/net"
cni_plugin_dirs = ["/usr/lib/cni"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{w}/libpod/events.log"
tmp_dir = "{w}/libpod"
image_copy_tmp_dir = "{w}/libpod"
lock_type = "file"
volume_path = "{w}/storage/volumes"
static_dir = "{w}/storage/libpod"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "pyrun"]

[engine.runtimes]
pyrun = ["{PYRUN}"]
runc = ["{RUNC}"]
""")
        self.storage_conf.write_text(f"""[storage]
driver = "vfs"
graphroot = "{w}/storage"
runroot = "{w}/run"
""")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CONTAINERS_", "REGISTRIES_", "XDG_"))}
        env["CONTAINERS_CONF"] = str(self.conf)
        env["CONTAINERS_STORAGE_CONF"] = str(self.storage_conf)
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.workdir / "registries.conf")
        return env

    def base(self, runtime: str | None = None) -> list[str]:
        w = self.workdir
        args = [PODMAN, "--root", f"{w}/storage", "--runroot", f"{w}/run",
                "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--tmpdir", f"{w}/libpod"]
        if runtime:
            args += ["--runtime", runtime]
        return args

    def __call__(self, *args: str, runtime: str | None = None, check: bool = True,
                 timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
        cmd = [*self.base(runtime), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=self.env(), input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}")
        return proc

    def run_args(self) -> list[str]:
        return ["--network", "none", "--cgroup-parent", f"/{CGROUP_PARENT}"]

    def import_rootfs(self, rootfs: Path) -> None:
        tar_path = self.workdir / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            for entry in sorted(os.listdir(rootfs)):
                tar.add(os.path.join(rootfs, entry), arcname=entry)
        self("import", "--quiet", str(tar_path), IMAGE)
        tar_path.unlink()

    def remove_all(self) -> None:
        for runtime in (str(PYRUN), RUNC):
            self("rm", "--all", "--force", "--time", "0", runtime=runtime, check=False)

    # -- teardown --

    def stop(self) -> None:
        try:
            self.remove_all()
            self("rmi", "--all", "--force", check=False)
        finally:
            self._kill_stragglers()
            self._remove_cgroups()
            self._unmount_all()
            shutil.rmtree(self.workdir, ignore_errors=True)
            if "/var/lib/containers" not in self._fixed_before:
                # c/image's blob-info cache: for root always here (no option or
                # environment variable moves it for `podman import`).
                for f in _BLOB_CACHE_FILES:
                    try:
                        os.unlink(f)
                    except OSError:
                        pass
            for d in _FIXED_DIRS:
                if d not in self._fixed_before:
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
            for root in RUNTIME_ROOTS:
                # A runtime root these tests brought into being (podman uses the
                # runtimes' default roots) goes again: pyrun's caches in it
                # (@validated-configs, @seccomp-filters), then the directory,
                # which rmdir leaves if any container state is still there.
                if root in self._roots_before or not os.path.isdir(root):
                    continue
                for name in os.listdir(root):
                    if name.startswith("@"):
                        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                try:
                    os.rmdir(root)
                except OSError:
                    pass

    def _kill_stragglers(self) -> None:
        """conmon (and anything else) whose command line names our directory, by pid."""
        kill_by_cmdline(str(self.workdir).encode())

    def _remove_cgroups(self) -> None:
        empty_and_remove_cgroups(_cgroup_dirs)

    def _unmount_all(self) -> None:
        unmount_below(str(self.workdir))


@pytest.fixture(scope="module")
def podman_env(rootfs_template: Path) -> Iterator[Podman]:
    pm = Podman(Path(tempfile.mkdtemp(prefix="pyrun-podman-")))
    try:
        pm.setup()
        pm.import_rootfs(rootfs_template)
        yield pm
    finally:
        pm.stop()


@pytest.fixture
def podman(podman_env: Podman) -> Iterator[Podman]:
    """podman, with a check that a test leaves no container, runtime state or
    container cgroup behind."""
    before = _runtime_state()
    yield podman_env
    # conmon runs `podman container cleanup` (runtime delete, cgroup removal)
    # after the container exits: give it a moment.
    left: list[str] = []
    state: list[str] = []
    cgroups: list[str] = []

    def nothing_left() -> bool:
        nonlocal left, state, cgroups
        left = podman_env("ps", "--all", "--quiet", check=False).stdout.split()
        state = sorted(_runtime_state() - before)
        cgroups = [d for d in _cgroup_dirs() if os.path.basename(d).startswith("libpod-")]
        return not (left or state or cgroups)
    with contextlib.suppress(AssertionError):       # the assert below names what is left
        eventually(nothing_left, 10, "podman's cleanup", interval=0.2)
    podman_env.remove_all()
    assert not (left or state or cgroups), \
        f"left behind: containers={left} runtime state={state} cgroups={cgroups}"


def _runtime_state() -> set[str]:
    """Container state directories (podman's 64-hex ids) under the runtimes' default roots."""
    found = set()
    for root in RUNTIME_ROOTS:
        try:
            found |= {f"{root}/{n}" for n in os.listdir(root)
                      if len(n) == 64 and all(c in "0123456789abcdef" for c in n)}
        except OSError:
            pass
    return found


def new_name() -> str:
    return "pt" + uuid.uuid4().hex[:10]


# --- scenarios --------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_rm_output_and_exit_code(podman: Podman, runtime: str) -> None:
    r = podman("run", "--rm", *podman.run_args(), "--name", new_name(), IMAGE,
               "sh", "-c", "echo hello pid $$; echo to-stderr >&2; exit 7",
               runtime=runtime, check=False)
    assert r.returncode == 7, r
    assert r.stdout == "hello pid 1\n", r
    assert "to-stderr" in r.stderr, r


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_rm_sees_limits_and_cgroup(podman: Podman, runtime: str) -> None:
    name = new_name()
    r = podman("run", "--rm", *podman.run_args(), "--name", name, IMAGE,
               "sh", "-c", "ulimit -n; grep -c " + CGROUP_PARENT + " /proc/self/cgroup",
               runtime=runtime)
    lines = r.stdout.split()
    assert lines[0] == "1024", r
    assert int(lines[1]) >= 1, r


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_stdin(podman: Podman, runtime: str) -> None:
    r = podman("run", "--rm", "-i", *podman.run_args(), IMAGE, "tr", "a-z", "A-Z",
               runtime=runtime, input="piped in\n")
    assert r.stdout == "PIPED IN\n", r


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_detached_exec_stop_rm(podman: Podman, runtime: str) -> None:
    name = new_name()
    podman("run", "-d", *podman.run_args(), "--name", name, IMAGE,
           "sh", "-c", "trap 'exit 42' TERM; echo ready > /tmp/ready; while :; do sleep 0.1; done",
           runtime=runtime)
    try:
        eventually(lambda: podman("exec", name, "test", "-e", "/tmp/ready", runtime=runtime,
                                  check=False).returncode == 0, 10, "the container to become ready", interval=0.1)
        r = podman("exec", name, "sh", "-c", "echo exec-out; cat /tmp/ready; echo exec-err >&2; exit 5",
                   runtime=runtime, check=False)
        assert r.returncode == 5, r
        assert r.stdout == "exec-out\nready\n", r
        assert "exec-err" in r.stderr, r
        info = json.loads(podman("inspect", name, runtime=runtime).stdout)[0]
        assert info["State"]["Status"] == "running", info["State"]
        assert os.path.basename(info["OCIRuntime"]) == os.path.basename(runtime), info["OCIRuntime"]
        podman("stop", "--time", "10", name, runtime=runtime)
        info = json.loads(podman("inspect", name, runtime=runtime).stdout)[0]
        assert info["State"]["Status"] == "exited", info["State"]
        assert info["State"]["ExitCode"] == 42, info["State"]
        podman("rm", name, runtime=runtime)
    finally:
        podman("rm", "--force", "--time", "0", name, runtime=runtime, check=False)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_missing_executable(podman: Podman, runtime: str) -> None:
    r = podman("run", "--rm", *podman.run_args(), IMAGE, "no-such-command-xyz",
               runtime=runtime, check=False)
    assert r.returncode == 127, r
    assert "executable file not found" in r.stderr, r
    assert "no-such-command-xyz" in r.stderr, r


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_and_exec_with_tty(podman: Podman, runtime: str) -> None:
    """-t: conmon passes --console-socket and waits for the pty master."""
    r = podman("run", "--rm", "-t", *podman.run_args(), IMAGE, "sh", "-c", "tty; exit 4",
               runtime=runtime, check=False)
    assert r.returncode == 4, r
    assert r.stdout.replace("\r", "").strip() == "/dev/pts/0", r
    name = new_name()
    podman("run", "-d", *podman.run_args(), "--name", name, IMAGE, "sleep", "100", runtime=runtime)
    try:
        r = podman("exec", "-t", name, "sh", "-c", "tty; echo $TERM", runtime=runtime)
        out = r.stdout.replace("\r", "").split()
        assert out[0].startswith("/dev/pts/") and out[1] == "xterm", r
    finally:
        podman("rm", "--force", "--time", "0", name, runtime=runtime, check=False)


@pytest.mark.criu
@pytest.mark.skipif(not os.environ.get("PYRUN_IN_VM"),
                    reason="CRIU 3.17 cannot dump on this kernel: tests/test_checkpoint_vm.py runs this in the VM")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_container_checkpoint_and_restore(podman: Podman, runtime: str) -> None:
    """`podman container checkpoint` / `restore` through the runtime's
    checkpoint and restore (conmon runs the latter): the counter goes on."""
    name = new_name()
    podman("run", "-d", *podman.run_args(), "--name", name, IMAGE,
           "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /count.log; sleep 0.2; done", runtime=runtime)
    try:
        def count() -> list[int]:
            r = podman("exec", name, "cat", "/count.log", runtime=runtime, check=False)
            return [int(n) for n in r.stdout.split()] if r.returncode == 0 else []
        eventually(lambda: len(count()) > 3, 60, "the counter to start", interval=0.2)
        podman("container", "checkpoint", name, runtime=runtime, timeout=300)
        info = json.loads(podman("inspect", name, runtime=runtime).stdout)[0]
        assert info["State"]["Status"] == "exited" and info["State"]["Checkpointed"], info["State"]
        podman("container", "restore", name, runtime=runtime, timeout=300)
        info = json.loads(podman("inspect", name, runtime=runtime).stdout)[0]
        assert info["State"]["Status"] == "running" and info["State"]["Restored"], info["State"]
        at_restore = len(count())
        after = eventually(lambda: len(c := count()) > at_restore + 2 and c, 60, "the counter to go on",
                           interval=0.2)
        assert after == list(range(1, len(after) + 1)), after
    finally:
        podman("rm", "--force", "--time", "0", name, runtime=runtime, check=False)
