"""A private, real Docker daemon (Debian's docker.io) for tests.

Not a test file: test modules build a fixture from it,

    from dockerd import dockerd_fixture
    dockerd = dockerd_fixture(runtimes=lambda workdir: {"capture": str(script)})

    @pytest.mark.docker
    def test_x(dockerd):
        dockerd.docker("run", "--rm", "--runtime", "capture", dockerd.image, "true")

Everything the daemon owns lives under one temporary directory: its data root,
exec root, pidfile, API socket, daemon.json and trust key, and the containerd
it starts (dockerd writes that containerd's config under <exec-root>/containerd,
with root=<data-root>/containerd/daemon and state=<exec-root>/containerd/daemon).
There is no default bridge (--bridge=none) and no iptables, NAT or forwarding,
so the host's iptables and sysctls are never touched; a test that needs a
network creates its own bridge network and removes it. Published ports go
through docker-proxy (--userland-proxy), which listens in the host's namespace
and connects to the container's address on that bridge. Containers get their cgroups under a per-run --cgroup-parent,
`pyrun-dockertest-<pid>`, whose empty directories are removed at teardown.

Two paths outside the temporary directory are compiled into Docker and
containerd and cannot be moved: dockerd creates /run/docker/plugins and
containerd's shims put their sockets in /run/containerd/s. Both are removed at
teardown if this run created them and they are empty.

Register the `docker` marker in pyproject: markers = ["docker: needs a real dockerd"].
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest
from daemon_cleanup import cgroup_dirs_named, empty_and_remove_cgroups, kill_by_cmdline, unmount_below
from waiting import eventually

IMAGE = "pyrun-busybox:test"
CGROUP_PARENT = f"pyrun-dockertest-{os.getpid()}"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
# Fixed by Docker / containerd, created on demand; removed only if we made them.
_FIXED_DIRS = ("/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd")


def docker_cli() -> str | None:
    """The client: Debian's own (same version as the daemon), else any on PATH."""
    for cand in ("/usr/bin/docker", "/usr/local/bin/docker", shutil.which("docker")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def dockerd_binary() -> str | None:
    found = shutil.which("dockerd")
    if found is None and os.access("/usr/sbin/dockerd", os.X_OK):
        found = "/usr/sbin/dockerd"
    return found


def missing_reason() -> str | None:
    """Why a real dockerd cannot run here, or None."""
    if dockerd_binary() is None:
        return "dockerd is not installed (install.sh installs Debian's docker.io)"
    if docker_cli() is None:
        return "no docker client"
    if shutil.which("containerd") is None:
        return "containerd is not installed (a dependency of docker.io)"
    return None


# --- what the client adds ------------------------------------------------------------

# Warnings the docker client itself prints about the HOST, not the container:
# the daemon runs with --ip-forward=false and never touches the sysctl, so on a
# fresh host (net.ipv4.ip_forward = 0) every `docker run` prints this line.
# Each is removed by its exact text, whole lines only; anything else the client
# or the container writes to stderr stays, so tests still compare it exactly.
CLIENT_WARNINGS = (
    "WARNING: IPv4 forwarding is disabled. Networking will not work.",
)


def without_client_warnings(stderr: str) -> str:
    """`stderr` less the client's host warnings (CLIENT_WARNINGS), line by line."""
    if not any(w in stderr for w in CLIENT_WARNINGS):
        return stderr
    lines = stderr.splitlines(keepends=True)
    return "".join(line for line in lines if line.rstrip("\r\n") not in CLIENT_WARNINGS)


# --- the daemon ------------------------------------------------------------------

Runtimes = Mapping[str, str] | Callable[[Path], Mapping[str, str]] | None


class Dockerd:
    """One dockerd (and the containerd it manages) private to a test run."""

    def __init__(self, workdir: Path, runtimes: Mapping[str, str] | None = None,
                 cgroup_parent: str = CGROUP_PARENT, extra_args: tuple[str, ...] = (),
                 cgroup_driver: str = "cgroupfs") -> None:
        self.workdir = Path(workdir)
        self.runtimes = dict(runtimes or {})
        # "systemd" (Docker's default where systemd is pid 1): containers are
        # systemd's docker-<id>.scope units in system.slice, no --cgroup-parent
        self.cgroup_driver = cgroup_driver
        self.cgroup_parent = cgroup_parent if cgroup_driver == "cgroupfs" else None
        self.extra_args = tuple(extra_args)
        self.data_root = self.workdir / "data"
        self.exec_root = self.workdir / "exec"
        self.pidfile = self.workdir / "dockerd.pid"
        self.socket = self.workdir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.config_file = self.workdir / "daemon.json"
        self.log_path = self.workdir / "dockerd.log"
        self.client_config = self.workdir / "client"
        self.cli = docker_cli() or "docker"
        self.image = IMAGE
        self.scratch = self.workdir / "scratch"    # for the caller's files
        self.proc: subprocess.Popen[bytes] | None = None
        self._fixed_dirs_before = {d for d in _FIXED_DIRS if os.path.lexists(d)}

    # -- command line --

    def argv(self) -> list[str]:
        args = [
            dockerd_binary() or "dockerd",
            "--config-file", str(self.config_file),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "-H", self.host,
            "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--ip-forward=false",
            "--bridge=none",
            "--userland-proxy=true",
            *(("--cgroup-parent", self.cgroup_parent) if self.cgroup_parent else ()),
            "--exec-opt", f"native.cgroupdriver={self.cgroup_driver}",
            "--log-level=warn",
            "--shutdown-timeout=5",
        ]
        for name, path in self.runtimes.items():
            args += ["--add-runtime", f"{name}={path}"]
        return args + list(self.extra_args)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.client_config)    # never ~/.docker
        return env

    # -- life cycle --

    def start(self, timeout: float = START_TIMEOUT) -> "Dockerd":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_config.mkdir(exist_ok=True)
        # A private daemon.json: /etc/docker/daemon.json is never read, and the
        # daemon's identity key goes here instead of /etc/docker/key.json.
        self.config_file.write_text(json.dumps(
            {"deprecated-key-path": str(self.workdir / "key.json")}))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env(),
                                         start_new_session=True)
        last = ""

        def answers() -> bool:
            nonlocal last
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode} while starting\n"
                                   f"{self.describe()}")
            if not self.socket.exists():
                return False
            r = self.docker("version", "--format", "{{.Server.Version}}", check=False,
                            timeout=max(10.0, timeout / 6))     # slower machines (a TCG VM) wait longer
            last = r.stderr.strip()
            return r.returncode == 0
        try:
            eventually(answers, timeout, "dockerd to answer", interval=0.1)
        except AssertionError:
            raise RuntimeError(f"dockerd did not answer `docker version` within {timeout:.0f} s"
                               f" (last error: {last or 'no socket yet'})\n{self.describe()}") from None
        return self

    def describe(self, lines: int = 40) -> str:
        return f"command: {' '.join(self.argv())}\n--- last {lines} lines of {self.log_path} ---\n" \
               f"{self.log_tail(lines)}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM and wait, SIGKILL if needed; then whatever the daemon left behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._kill_stragglers()
        self._unmount_all()
        self._remove_cgroups()
        self._remove_shim_sockets()
        shutil.rmtree(self.workdir, ignore_errors=True)
        for d in _FIXED_DIRS:          # children first: the order of _FIXED_DIRS
            if d not in self._fixed_dirs_before:
                try:
                    os.rmdir(d)            # only if empty
                except OSError:
                    pass

    def _kill_stragglers(self) -> None:
        """containerd and shims that outlived a killed dockerd: only processes whose
        command line names our private directory, each by pid."""
        kill_by_cmdline(str(self.workdir).encode())

    def _remove_shim_sockets(self) -> None:
        """A killed shim leaves its socket in /run/containerd/s, named (containerd
        1.6) by sha256("<containerd address>/<namespace>/<container id>")."""
        address = self.exec_root / "containerd" / "containerd.sock"
        tasks = self.exec_root / "containerd" / "daemon" / "io.containerd.runtime.v2.task"
        if not tasks.is_dir():
            return
        for ns in tasks.iterdir():
            for task in ns.iterdir() if ns.is_dir() else ():
                name = hashlib.sha256(f"{address}/{ns.name}/{task.name}".encode()).hexdigest()
                sock = Path("/run/containerd/s") / name
                if sock.is_socket():
                    sock.unlink()

    def _unmount_all(self) -> None:
        unmount_below(str(self.workdir))

    def _our_cgroups(self) -> list[str]:
        """Every cgroup directory at or below one named after our --cgroup-parent,
        deepest first."""
        return cgroup_dirs_named(self.cgroup_parent)

    def _remove_cgroups(self) -> None:
        """Containers a dead daemon left running are killed, by pid; then the empty
        directories under our --cgroup-parent are removed. Nothing else is touched."""
        if self.cgroup_parent:          # systemd's scopes are systemd's to remove
            empty_and_remove_cgroups(self._our_cgroups)

    # -- the client --

    def docker(self, *args: str, check: bool = True, timeout: float = 60,
               input: str | bytes | None = None, text: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.cli, "-H", self.host, *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=text,
                              timeout=timeout, env=self.env())
        if text:
            proc.stderr = without_client_warnings(proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}\n--- dockerd log ---\n{self.log_tail(20)}")
        return proc

    def import_rootfs(self, rootfs: Path, tag: str = IMAGE) -> str:
        """`docker import` a tar of a rootfs directory; returns the image id."""
        tar_path = self.workdir / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            for entry in sorted(os.listdir(rootfs)):
                tar.add(os.path.join(rootfs, entry), arcname=entry)
        image_id = self.docker("import", str(tar_path), tag).stdout.strip()
        tar_path.unlink()
        self.image = tag
        return image_id


@contextmanager
def running_dockerd(runtimes: Runtimes = None, rootfs: Path | None = None,
                    start_timeout: float = START_TIMEOUT, **kw: Any) -> Iterator[Dockerd]:
    """Start a private dockerd, import `rootfs` as pyrun-busybox:test, stop it after.

    `runtimes` maps --add-runtime names to paths; a callable gets the daemon's
    scratch directory (removed at teardown) to write runtime scripts into."""
    # A short path: unix socket paths under it must stay below 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="pyrun-dockerd-"))
    scratch = workdir / "scratch"
    scratch.mkdir()
    try:
        daemon = Dockerd(workdir, runtimes(scratch) if callable(runtimes) else runtimes, **kw)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        daemon.start(start_timeout)
        if rootfs is not None:
            daemon.import_rootfs(rootfs)
        yield daemon
    finally:
        daemon.stop()


def dockerd_fixture(runtimes: Runtimes = None, scope: str = "session", **kw: Any) -> Any:
    """A pytest fixture: a running private dockerd with conftest's busybox rootfs
    imported as pyrun-busybox:test (see running_dockerd). Skips when docker.io
    is not installed."""

    @pytest.fixture(scope=scope)
    def _dockerd(rootfs_template: Path) -> Iterator[Dockerd]:
        reason = missing_reason()
        if reason:
            pytest.skip(reason)
        with running_dockerd(runtimes, rootfs=rootfs_template, **kw) as daemon:
            yield daemon

    return _dockerd
