"""pyrun under a real containerd 1.6 (Debian's), driven with `ctr`.

A private containerd runs for the module: its root, state, gRPC/ttrpc sockets,
config, the shim's runc --root and ctr's IO fifos all live under one temporary
directory. Containers go in their own namespace, `pyrun-ctrtest-<pid>`, with
cgroups under `/pyrun-ctrtest-<pid>/<id>`, removed at teardown.

The image is conftest's busybox rootfs packed here as an OCI image layout tar
(one gzip layer, a config, a manifest, index.json) and `ctr image import`ed.

How the runtime is chosen:
  * CLI route (runc v2 shim): `ctr run --runtime io.containerd.runc.v2
    --runc-binary <path>` sets the shim option BinaryName; `ctr task exec`,
    `kill` and `delete` reuse the options stored with the container.
  * Config-file route: in containerd 1.6 a BinaryName in the config file is
    only read by the CRI plugin (`[plugins."io.containerd.grpc.v1.cri".
    containerd.runtimes.<name>.options]`), which ctr does not use;
    `ctr run --runtime-config-path` is only sent for runtimes other than
    io.containerd.runc.v2 (as runtimeoptions.ConfigPath). What ctr *can* take
    from the daemon's config is the (deprecated, still shipped in 1.6)
    v1 runtime: `[plugins."io.containerd.runtime.v1.linux"] runtime = <path>`,
    used with `ctr run --runtime io.containerd.runtime.v1.linux`.
    test_config_file_v1_runtime shows that route with a second daemon.

Two paths are compiled into containerd and cannot be moved: the v2 shims put
their sockets in /run/containerd/s. It is removed at teardown if this run
created it and it is empty (socket files left by killed shims are removed).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PYRUN
from oci_image import build_oci_archive
from daemon_cleanup import cgroup_dirs_named, empty_and_remove_cgroups, kill_by_cmdline, unmount_below
from waiting import eventually

RUNC = "/usr/sbin/runc"
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
NAMESPACE = f"pyrun-ctrtest-{os.getpid()}"
IMAGE = "docker.io/library/pyrun-busybox:test"
V2 = "io.containerd.runc.v2"
V1 = "io.containerd.runtime.v1.linux"
_FIXED_DIRS = ("/run/containerd/s", "/run/containerd")

RUNTIMES = [pytest.param(str(PYRUN), id="pyrun"), pytest.param(RUNC, id="runc")]

pytestmark = pytest.mark.skipif(CONTAINERD is None or CTR is None,
                                reason="containerd/ctr not installed (a docker.io dependency)")


# --- the daemon ---------------------------------------------------------------------

class Containerd:
    def __init__(self, workdir: Path, v1_runtime: str | None = None) -> None:
        self.workdir = workdir
        self.config = workdir / "config.toml"
        self.address = str(workdir / "c.sock")
        self.runc_root = workdir / "runc"
        self.fifo_dir = workdir / "fifo"
        self.log_path = workdir / "containerd.log"
        self.v1_runtime = v1_runtime
        self.proc: subprocess.Popen | None = None
        self._fixed_before = {d for d in _FIXED_DIRS if os.path.lexists(d)}

    def write_config(self) -> None:
        w = self.workdir
        extra = ""
        if self.v1_runtime:
            extra = (f'[plugins."io.containerd.runtime.v1.linux"]\n'
                     f'  runtime = "{self.v1_runtime}"\n  runtime_root = "{self.runc_root}-v1"\n'
                     f'  shim = "containerd-shim"\n  no_shim = false\n')
        self.config.write_text(f"""version = 2
root = "{w}/root"
state = "{w}/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/opt"
{extra}""")

    def start(self, timeout: float = 30) -> "Containerd":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fifo_dir.mkdir(exist_ok=True)
        self.write_config()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([CONTAINERD, "--config", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}\n{self.log_tail()}")
            return os.path.exists(self.address) and \
                self.ctr("version", check=False, timeout=10).returncode == 0
        try:
            eventually(answers, timeout, "containerd to answer", interval=0.1)
        except AssertionError:
            raise RuntimeError(f"containerd did not answer within {timeout} s\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def ctr(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        cmd = [CTR, "--address", self.address, "--namespace", NAMESPACE, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}\n--- containerd log ---\n{self.log_tail(15)}")
        return proc

    def run_args(self, runtime: str, cid: str, route: str = V2) -> list[str]:
        """`ctr run` options choosing `runtime` and keeping everything private."""
        args = ["--fifo-dir", str(self.fifo_dir), "--cgroup", f"/{NAMESPACE}/{cid}"]
        if route == V2:
            args += ["--runtime", V2, "--runc-binary", runtime, "--runc-root", str(self.runc_root)]
        else:
            args += ["--runtime", V1]
        return args

    # -- teardown --

    def remove_all(self) -> None:
        """Every task and container in our namespace (a failed test's leftovers)."""
        for cid in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("task", "kill", "-s", "KILL", cid, check=False)
            with contextlib.suppress(AssertionError):     # then delete --force below
                eventually(lambda: self.ctr("task", "delete", cid, check=False).returncode == 0
                           or task_status(self, cid) == "(no task)", 5, f"task {cid} deleted", interval=0.1)
            self.ctr("task", "delete", "--force", cid, check=False)
            self.ctr("containers", "delete", cid, check=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.remove_all()
                self.ctr("images", "rm", IMAGE, check=False)
            finally:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        self._kill_stragglers()
        self._remove_cgroups()
        self._unmount_all()
        self._remove_shim_sockets()
        shutil.rmtree(self.workdir, ignore_errors=True)
        for d in _FIXED_DIRS:
            if d not in self._fixed_before:
                try:
                    os.rmdir(d)
                except OSError:
                    pass

    def _kill_stragglers(self) -> None:
        """Shims still running after containerd stopped: by pid, only those whose
        command line names our private socket."""
        kill_by_cmdline(self.address.encode())

    def _remove_cgroups(self) -> None:
        empty_and_remove_cgroups(lambda: cgroup_dirs_named(NAMESPACE))

    def _unmount_all(self) -> None:
        unmount_below(str(self.workdir))

    def _remove_shim_sockets(self) -> None:
        """containerd 1.6 names a v2 shim's socket sha256("<address>/<ns>/<id>")."""
        tasks = self.workdir / "state" / "io.containerd.runtime.v2.task" / NAMESPACE
        if tasks.is_dir():
            for task in tasks.iterdir():
                name = hashlib.sha256(f"{self.address}/{NAMESPACE}/{task.name}".encode()).hexdigest()
                sock = Path("/run/containerd/s") / name
                if sock.is_socket():
                    sock.unlink()


@pytest.fixture(scope="module")
def containerd(rootfs_template: Path) -> Iterator[Containerd]:
    # A short path: the socket path must stay below 108 bytes.
    daemon = Containerd(Path(tempfile.mkdtemp(prefix="pyrun-ctrd-")))
    try:
        daemon.start()
        archive = daemon.workdir / "image.tar"
        build_oci_archive(rootfs_template, archive, IMAGE)
        daemon.ctr("images", "import", str(archive), timeout=60)
        archive.unlink()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def ctrd(containerd: Containerd) -> Iterator[Containerd]:
    """The daemon, with a check that a test leaves no container, task, runtime
    state or cgroup behind."""
    yield containerd
    left = containerd.ctr("containers", "ls", "-q", check=False).stdout.split()
    containerd.remove_all()
    state = containerd.runc_root / NAMESPACE
    runtime_state = [n for n in os.listdir(state) if not n.startswith("@")] if state.is_dir() else []
    cgroups = [d for d in cgroup_dirs_named(NAMESPACE) if os.path.basename(d) != NAMESPACE]
    assert not (left or runtime_state or cgroups), \
        f"left behind: containers={left} runtime state={runtime_state} cgroups={cgroups}"


def new_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


def task_status(ctrd: Containerd, cid: str) -> str:
    for line in ctrd.ctr("task", "ls", check=False).stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return fields[-1]
    return "(no task)"


def wait_task_status(ctrd: Containerd, cid: str, status: str, timeout: float = 10) -> str:
    """The task's status once it is `status`, or "(no task)" once it is gone;
    AssertionError naming the last status if neither happens in time."""
    return eventually(lambda: (s := task_status(ctrd, cid)) in (status, "(no task)") and s,
                      timeout, f"task {cid} {status}", interval=0.05)


# --- scenarios ------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_rm_output_and_exit_code(ctrd: Containerd, runtime: str) -> None:
    cid = new_id()
    r = ctrd.ctr("run", "--rm", *ctrd.run_args(runtime, cid), IMAGE, cid,
                 "sh", "-c", "echo hello from pid $$; echo to-stderr >&2; exit 7", check=False)
    assert r.returncode == 7, r
    assert r.stdout == "hello from pid 1\n", r
    assert "to-stderr" in r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_rm_zero_exit(ctrd: Containerd, runtime: str) -> None:
    cid = new_id()
    r = ctrd.ctr("run", "--rm", *ctrd.run_args(runtime, cid), IMAGE, cid,
                 "sh", "-c", "test $$ = 1 && cat /proc/self/cgroup | grep -c " + cid)
    assert int(r.stdout.strip()) >= 1, r


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_detached_exec_kill_delete(ctrd: Containerd, runtime: str) -> None:
    cid = new_id()
    ctrd.ctr("run", "-d", *ctrd.run_args(runtime, cid), IMAGE, cid,
             "sh", "-c", "trap 'exit 42' TERM; echo ready > /tmp/ready; while :; do sleep 0.1; done")
    try:
        assert wait_task_status(ctrd, cid, "RUNNING") == "RUNNING"
        # the binary named by --runc-binary is the one running it, under --runc-root
        st = subprocess.run([runtime, "--root", f"{ctrd.runc_root}/{NAMESPACE}", "state", cid],
                            capture_output=True, text=True)
        assert st.returncode == 0 and json.loads(st.stdout)["status"] == "running", st
        eventually(lambda: ctrd.ctr("task", "exec", "--exec-id", "probe", "--fifo-dir", str(ctrd.fifo_dir),
                                    cid, "test", "-e", "/tmp/ready", check=False).returncode == 0,
                   10, "the container to become ready", interval=0.1)
        r = ctrd.ctr("task", "exec", "--exec-id", "x", "--fifo-dir", str(ctrd.fifo_dir), cid,
                     "sh", "-c", "echo exec-out; cat /tmp/ready; echo exec-err >&2; exit 5", check=False)
        assert r.returncode == 5, r
        assert r.stdout == "exec-out\nready\n", r
        assert "exec-err" in r.stderr
        # the exec id can be used again once the first is gone
        r = ctrd.ctr("task", "exec", "--exec-id", "x", "--fifo-dir", str(ctrd.fifo_dir), cid,
                     "sh", "-c", "echo $$ $PPID")
        assert r.stdout.split()[1] == "0", r      # joined the pid namespace from outside
        ctrd.ctr("task", "kill", cid)                 # SIGTERM: the trap exits 42
        assert wait_task_status(ctrd, cid, "STOPPED") == "STOPPED"
        r = ctrd.ctr("task", "delete", cid, check=False)
        # this ctr deletes it (exit 0) and warns with the trap's exit status, exactly
        assert r.returncode == 0, r
        assert [line.split(" msg=", 1)[1] for line in r.stderr.splitlines()] == \
            [f'"task {cid} exit with non-zero exit code 42"'], r
    finally:
        ctrd.ctr("task", "kill", "-s", "KILL", cid, check=False)
        with contextlib.suppress(AssertionError):     # cleanup: the test's own error matters
            wait_task_status(ctrd, cid, "STOPPED", timeout=5)
        ctrd.ctr("task", "delete", cid, check=False)
        ctrd.ctr("containers", "delete", cid, check=False)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_kill_all_sigkill(ctrd: Containerd, runtime: str) -> None:
    cid = new_id()
    ctrd.ctr("run", "-d", *ctrd.run_args(runtime, cid), IMAGE, cid, "sleep", "1000")
    try:
        assert wait_task_status(ctrd, cid, "RUNNING") == "RUNNING"
        ctrd.ctr("task", "kill", "--all", "-s", "SIGKILL", cid)
        assert wait_task_status(ctrd, cid, "STOPPED") == "STOPPED"
        ctrd.ctr("task", "delete", cid, check=False)
    finally:
        ctrd.ctr("task", "delete", "--force", cid, check=False)
        ctrd.ctr("containers", "delete", cid, check=False)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_missing_executable_message(ctrd: Containerd, runtime: str) -> None:
    cid = new_id()
    r = ctrd.ctr("run", "--rm", *ctrd.run_args(runtime, cid), IMAGE, cid, "no-such-command-xyz",
                 check=False)
    assert r.returncode != 0, r
    assert "OCI runtime create failed" in r.stderr, r
    assert "executable file not found" in r.stderr, r
    assert "no-such-command-xyz" in r.stderr, r
    ctrd.ctr("containers", "delete", cid, check=False)    # --rm does not get this far


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_config_file_v1_runtime(rootfs_template: Path, runtime: str) -> None:
    """The runtime named in containerd's config file (the v1 linux runtime plugin)."""
    if shutil.which("containerd-shim") is None:
        pytest.skip("no containerd-shim (v1)")
    daemon = Containerd(Path(tempfile.mkdtemp(prefix="pyrun-ctrd1-")), v1_runtime=runtime)
    try:
        daemon.start()
        archive = daemon.workdir / "image.tar"
        build_oci_archive(rootfs_template, archive, IMAGE)
        daemon.ctr("images", "import", str(archive), timeout=60)
        cid = new_id()
        r = daemon.ctr("run", "--rm", *daemon.run_args(runtime, cid, route=V1), IMAGE, cid,
                       "sh", "-c", "echo v1 pid $$; exit 3", check=False)
        assert r.returncode == 3, (r, daemon.log_tail())
        assert r.stdout == "v1 pid 1\n", r
        # The configured binary is the one that ran it: its own `state` reads
        # the state under the configured runtime_root.
        cid = new_id()
        daemon.ctr("run", "-d", *daemon.run_args(runtime, cid, route=V1), IMAGE, cid, "sleep", "100")
        st = subprocess.run([runtime, "--root", f"{daemon.runc_root}-v1/{NAMESPACE}", "state", cid],
                            capture_output=True, text=True)
        assert st.returncode == 0 and json.loads(st.stdout)["status"] == "running", st
        daemon.ctr("task", "kill", "-s", "KILL", cid)
        assert wait_task_status(daemon, cid, "STOPPED") == "STOPPED"
        daemon.ctr("task", "delete", cid)
        daemon.ctr("containers", "delete", cid)
    finally:
        daemon.stop()
