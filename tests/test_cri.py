"""pyrun as a Kubernetes runtime handler: containerd 1.6's CRI plugin, driven with crictl.

One private containerd (tests/cri_daemon.py) serves the module with two runtime
handlers, `pyrun` and `runc` (the runc v2 shim with BinaryName), and every
scenario runs with both, as a RuntimeClass would select them. crictl comes from
../shared/upstream/cri-tools-1.26.1.tar.gz (conformance/upstream/build.py,
cached). What is asserted is what the kernel shows from the host side (namespace
inodes, cgroup files, /proc) and what the CRI reports, never pyrun's own output.
"""
from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import PYRUN, REPO
from cri_daemon import BUSYBOX_IMAGE, CONTAINERD, CTR, K8S_NS, RUNC, CriContainerd, new_workdir
from waiting import eventually

HANDLERS = [pytest.param("pyrun", id="pyrun"), pytest.param("runc", id="runc")]
POD, CONTAINER = 0, 1          # runtime.v1 NamespaceMode

pytestmark = pytest.mark.skipif(CONTAINERD is None or CTR is None or not os.path.exists("/usr/lib/cni/loopback"),
                                reason="containerd, ctr or the CNI loopback plugin not installed")


def _crictl_binary() -> str:
    sys.path.insert(0, str(REPO / "conformance" / "upstream"))
    import build
    return str(build.cri_dir(build.build("cri-tools")) / "bin" / "crictl")


class Crictl:
    def __init__(self, binary: str, daemon: CriContainerd) -> None:
        self.binary = binary
        self.daemon = daemon
        endpoint = f"unix://{daemon.address}"
        self.base = [binary, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, "--timeout", "60s"]
        self.files = daemon.workdir / "specs"
        self.files.mkdir(exist_ok=True)

    def __call__(self, *args: str, check: bool = True, timeout: float = 90,
                 input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"crictl {args} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}\n--- containerd log ---\n{self.daemon.log_tail(10)}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(args[0], "-o", "json", *args[1:]).stdout)

    def spec_file(self, spec: dict) -> str:
        path = self.files / f"{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(spec))
        return str(path)


class Pod:
    """A pod sandbox and its containers, made through the CRI with one handler."""

    def __init__(self, cri: Crictl, handler: str, pid_mode: int = CONTAINER) -> None:
        self.cri = cri
        self.handler = handler
        self.pid_mode = pid_mode
        self.name = "p" + uuid.uuid4().hex[:10]
        self.hostname = f"host-{self.name}"
        self.config = {
            "metadata": {"name": self.name, "namespace": "pyrun-test", "uid": self.name, "attempt": 0},
            "hostname": self.hostname,
            "log_directory": str(cri.daemon.pod_logs / self.name),
            "linux": {"cgroup_parent": f"/{cri.daemon.cgroup_parent}/{self.name}",
                      "security_context": {"namespace_options": {"network": POD, "pid": pid_mode, "ipc": POD}}},
        }
        self.id = ""

    def run(self) -> "Pod":
        self.pod_file = self.cri.spec_file(self.config)
        self.id = self.cri("runp", "--runtime", self.handler, self.pod_file).stdout.strip()
        return self

    def create(self, name: str, *command: str, start: bool = True, **extra: Any) -> str:
        linux = extra.pop("linux", {})
        linux.setdefault("security_context", {})["namespace_options"] = \
            {"network": POD, "pid": self.pid_mode, "ipc": POD}
        spec = {"metadata": {"name": name}, "image": {"image": BUSYBOX_IMAGE}, "command": list(command),
                "log_path": f"{name}.log", "linux": linux, **extra}
        cid = self.cri("create", self.id, self.cri.spec_file(spec), self.pod_file).stdout.strip()
        if start:
            self.cri("start", cid)
        return cid

    def remove(self) -> None:
        if self.id:
            self.cri("stopp", self.id, check=False)
            self.cri("rmp", "-f", self.id)
        self.remove_cgroup()

    def remove_cgroup(self) -> None:
        """The pod-level cgroup parent is the kubelet's to make and remove, not
        containerd's: removed here as the kubelet does (it fails if not empty)."""
        for top in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(top / self.cri.daemon.cgroup_parent / self.name)

    def info(self) -> dict:
        return self.cri.json("inspectp", self.id)

    def sandbox_pid(self) -> int:
        return self.info()["info"]["pid"]


def inspect(cri: Crictl, cid: str) -> dict:
    return cri.json("inspect", cid)


def container_pid(cri: Crictl, cid: str) -> int:
    return inspect(cri, cid)["info"]["pid"]


def wait_state(cri: Crictl, cid: str, state: str, timeout: float = 30) -> dict:
    def reached() -> dict | None:
        st = inspect(cri, cid)["status"]
        return st if st["state"] == state else None
    return eventually(reached, timeout, f"container {cid} {state}", interval=0.1)


def ns_inode(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def v1_cgroup_dir(pid: int, controller: str) -> Path:
    """The host path of the process's cgroup in a v1 hierarchy."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
    raise AssertionError(f"no v1 {controller} cgroup for {pid}")


def our_cgroups(daemon: CriContainerd) -> list[str]:
    found = []
    for top in Path("/sys/fs/cgroup").iterdir():
        base = top / daemon.cgroup_parent
        if base.is_dir():
            found += [d for d, _dirs, _files in os.walk(base) if d != str(base)]
    return found


# --- fixtures ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def cri_module(rootfs_template: Path) -> Iterator[Crictl]:
    binary = _crictl_binary()
    daemon = CriContainerd(new_workdir(), str(PYRUN))
    try:
        daemon.start()
        daemon.import_busybox(rootfs_template)
        yield Crictl(binary, daemon)
    finally:
        daemon.stop(binary)


@pytest.fixture
def cri(cri_module: Crictl) -> Iterator[Crictl]:
    """The daemon, with a check that a test leaves no pod, container, runtime
    state, shim state or cgroup behind."""
    yield cri_module
    daemon = cri_module.daemon
    pods = cri_module("pods", "-q").stdout.split()
    containers = cri_module("ps", "-a", "-q").stdout.split()
    daemon.remove_all(cri_module.binary)
    runtime_state = [str(p) for h in ("pyrun", "runc") for p in (daemon.handler_root(h) / K8S_NS).glob("*")
                     if not p.name.startswith("@")]
    tasks = list((daemon.workdir / "state" / "io.containerd.runtime.v2.task" / K8S_NS).glob("*"))
    assert not (pods or containers or runtime_state or tasks), \
        f"left behind: pods={pods} containers={containers} runtime state={runtime_state} tasks={tasks}"
    eventually(lambda: not our_cgroups(daemon), 10, "the pod cgroups to go", interval=0.1)


@pytest.fixture
def pods(cri: Crictl) -> Iterator[list[Pod]]:
    """Pods a test makes; removed (stopped, then removed) after it."""
    made: list[Pod] = []
    yield made
    for pod in made:
        pod.remove()


def new_pod(cri: Crictl, pods: list[Pod], handler: str, pid_mode: int = CONTAINER) -> Pod:
    pod = Pod(cri, handler, pid_mode)
    pods.append(pod)
    return pod.run()


# --- scenarios ----------------------------------------------------------------------

@pytest.mark.parametrize("handler", HANDLERS)
def test_sandbox_shares_net_ipc_uts(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    cid = pod.create("app", "sleep", "1000")
    # the handler's own binary runs both, under the --root the config gave it
    binary = {"pyrun": str(PYRUN), "runc": RUNC}[handler]
    for container in (pod.id, cid):
        st = subprocess.run([binary, "--root", str(cri.daemon.handler_root(handler) / K8S_NS), "state", container],
                            capture_output=True, text=True)
        assert st.returncode == 0 and json.loads(st.stdout)["status"] == "running", st
    sandbox, app = pod.sandbox_pid(), container_pid(cri, cid)
    for kind in ("net", "ipc", "uts"):
        assert ns_inode(app, kind) == ns_inode(sandbox, kind), kind
        assert ns_inode(sandbox, kind) != ns_inode(os.getpid(), kind), kind
    assert ns_inode(app, "pid") != ns_inode(sandbox, "pid")      # pid: per container here
    assert ns_inode(app, "mnt") != ns_inode(sandbox, "mnt")
    r = cri("exec", "-s", cid, "sh", "-c", "hostname; readlink /proc/1/exe; ip -4 addr show eth0")
    hostname, exe, addr = r.stdout.split("\n", 2)
    assert hostname == pod.hostname
    ip = pod.info()["status"]["network"]["ip"]
    assert f" inet {ip}/16 " in addr, (addr, ip)     # the address the CRI reports, on eth0
    assert exe == "/bin/busybox"            # the container's own pid 1, not /pause


@pytest.mark.parametrize("handler", HANDLERS)
def test_pid_shared_pod_containers_see_each_other(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler, pid_mode=POD)
    a = pod.create("a", "sleep", "1001")
    b = pod.create("b", "sleep", "1002")
    sandbox = pod.sandbox_pid()
    assert ns_inode(container_pid(cri, a), "pid") == ns_inode(sandbox, "pid") == \
        ns_inode(container_pid(cri, b), "pid")
    ps = cri("exec", "-s", b, "ps", "-o", "pid,args").stdout
    procs = {args: pid for pid, args in (line.split(None, 1) for line in ps.splitlines()[1:] if line)}
    assert procs.get("/pause") == "1", ps
    assert "sleep 1001" in procs and "sleep 1002" in procs, ps
    # and a signal from one container reaches the other's process
    cri("exec", "-s", b, "kill", procs["sleep 1001"])
    st = wait_state(cri, a, "CONTAINER_EXITED")
    assert st["exitCode"] == 143, st           # 128 + SIGTERM: not pid 1 of its own namespace


@pytest.mark.parametrize("handler", HANDLERS)
def test_unshared_pid_pod_isolates_containers(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler, pid_mode=CONTAINER)
    pod.create("a", "sleep", "1001")
    b = pod.create("b", "sleep", "1002")
    ps = cri("exec", "-s", b, "ps", "-o", "pid,args").stdout
    args = [line.split(None, 1)[1] for line in ps.splitlines()[1:] if line]
    assert args[0] == "sleep 1002", ps         # pid 1 is its own
    assert "sleep 1001" not in args and "/pause" not in args, ps


@pytest.mark.parametrize("handler", HANDLERS)
def test_exec_sync_output_and_exit_code(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    cid = pod.create("app", "sleep", "1000")
    r = cri("exec", "-s", cid, "sh", "-c", "echo out $$ $PPID; echo err >&2")
    # crictl 1.26 prints the reply's stdout, then its stderr, each followed by a newline
    m = re.fullmatch(r"out (\d+) 0\n\nerr\n\n", r.stdout)
    assert m, r                     # parent pid 0: joined the pid namespace from outside
    assert m.group(1) != "1", r     # not the container's pid 1
    r = cri("exec", "-s", cid, "sh", "-c", "echo err >&2; exit 3", check=False)
    assert r.returncode == 1, r                 # crictl's own status; the CRI's is in its message
    assert "exited with 3: err" in r.stderr, r


def _pty_session(cmd: list[str], script: bytes, timeout: float = 60) -> tuple[int, str]:
    """Run `cmd` on a new pseudo-terminal, type `script`, read until it exits."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        os.write(master, script)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:        # EIO: the other side is closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("handler", HANDLERS)
def test_exec_streaming_with_tty(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    cid = pod.create("app", "sleep", "1000")
    rc, out = _pty_session(cri.base + ["exec", "-it", cid, "sh"],
                           b"tty; echo answer=$((6*7)); exit 5\n")
    assert "\n/dev/pts/0\r\n" in out, out      # a terminal of the container's own devpts
    assert "\nanswer=42\r\n" in out, out       # output, not the echo of what was typed
    assert rc == 1 and "command terminated with exit code 5" in out, (rc, out)
    # without -t: no terminal
    r = cri("exec", "-i", cid, "sh", "-c", "tty; cat", input="through stdin\n", check=False)
    assert r.stdout == "not a tty\nthrough stdin\n", r


@pytest.mark.parametrize("handler", HANDLERS)
def test_attach(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    cid = pod.create("app", "sh", "-c", "while read line; do echo got:$line; done; echo eof; exit 4",
                     stdin=True, stdin_once=True)
    proc = subprocess.Popen(cri.base + ["attach", "-i", cid], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate("ping\npong\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == "got:ping\ngot:pong\neof\n", (out, err)
    st = wait_state(cri, cid, "CONTAINER_EXITED")        # stdin_once: our EOF was its EOF
    assert st["exitCode"] == 4, st


LOG_LINE = re.compile(r"^(\S+) (stdout|stderr) ([FP]) (.*)$")


@pytest.mark.parametrize("handler", HANDLERS)
def test_logs_in_cri_format(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    cid = pod.create("app", "sh", "-c", "echo first; echo to-stderr >&2; printf 'no newline'")
    wait_state(cri, cid, "CONTAINER_EXITED")
    path = Path(inspect(cri, cid)["status"]["logPath"])
    assert path == cri.daemon.pod_logs / pod.name / "app.log"
    entries = []
    for line in path.read_text().splitlines():
        m = LOG_LINE.match(line)
        assert m, line
        stamp = re.sub(r"(\.\d{6})\d*", r"\1", m.group(1)).replace("Z", "+00:00")
        datetime.fromisoformat(stamp)                       # RFC 3339
        entries.append(m.groups()[1:])
    assert sorted(entries) == sorted([("stdout", "F", "first"), ("stderr", "F", "to-stderr"),
                                      ("stdout", "P", "no newline")]), entries   # P: partial
    r = cri("logs", cid)
    assert r.stdout == "first\nno newline", r
    assert r.stderr.strip() == "to-stderr", r


@pytest.mark.parametrize("handler", HANDLERS)
def test_container_and_pod_stats(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    cid = pod.create("app", "sh", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; "
                                        "touch /tmp/done; exec sleep 1000")
    eventually(lambda: cri("exec", "-s", cid, "test", "-e", "/tmp/done", check=False).returncode == 0,
               60, "the busy loop to finish", interval=0.2)
    cpu_ns = int((v1_cgroup_dir(container_pid(cri, cid), "cpuacct") / "cpuacct.usage").read_text())
    stats = cri.json("stats", "--id", cid)["stats"]
    assert [s["attributes"]["id"] for s in stats] == [cid]
    used = int(stats[0]["cpu"]["usageCoreNanoSeconds"]["value"])
    assert used >= cpu_ns > 0, (used, cpu_ns)                 # read after the host's: only grows
    assert int(stats[0]["memory"]["workingSetBytes"]["value"]) > 0, stats
    podstats = cri.json("statsp", "--id", pod.id)["stats"]
    assert [s["attributes"]["id"] for s in podstats] == [pod.id]
    linux = podstats[0]["linux"]
    assert int(linux["cpu"]["usageCoreNanoSeconds"]["value"]) >= cpu_ns, linux["cpu"]
    assert [c["attributes"]["id"] for c in linux["containers"]] == [cid]


@pytest.mark.parametrize("handler", HANDLERS)
def test_update_resources(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    cid = pod.create("app", "sleep", "1000")
    pid = container_pid(cri, cid)
    mem, cpu = v1_cgroup_dir(pid, "memory"), v1_cgroup_dir(pid, "cpu")
    assert cid in str(mem) and cid in str(cpu)
    assert int((mem / "memory.limit_in_bytes").read_text()) != 64 << 20
    cri("update", "--memory", str(64 << 20), "--cpu-period", "100000", "--cpu-quota", "25000",
        "--cpu-share", "256", cid)
    assert int((mem / "memory.limit_in_bytes").read_text()) == 64 << 20
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == 25000
    assert int((cpu / "cpu.cfs_period_us").read_text()) == 100000
    assert int((cpu / "cpu.shares").read_text()) == 256
    assert container_pid(cri, cid) == pid                     # updated in place


@pytest.mark.parametrize("handler", HANDLERS)
def test_oom_kill_reported(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    cid = pod.create("hog", "tail", "/dev/zero",             # a line that never ends, in memory
                     linux={"resources": {"memory_limit_in_bytes": 32 << 20}})
    st = wait_state(cri, cid, "CONTAINER_EXITED", timeout=60)
    assert st["reason"] == "OOMKilled", st
    assert st["exitCode"] == 137, st


@pytest.mark.parametrize("handler", HANDLERS)
def test_exit_codes(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    failing = pod.create("fails", "sh", "-c", "exit 3")
    ok = pod.create("succeeds", "true")
    st = wait_state(cri, failing, "CONTAINER_EXITED")
    assert (st["exitCode"], st["reason"]) == (3, "Error"), st
    st = wait_state(cri, ok, "CONTAINER_EXITED")
    assert (st["exitCode"], st["reason"]) == (0, "Completed"), st
    assert sorted(cri("ps", "-a", "-q", "--state", "exited", "--pod", pod.id).stdout.split()) == \
        sorted([failing, ok])


@pytest.mark.parametrize("handler", HANDLERS)
def test_stop_with_grace_period(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler)
    polite = pod.create("polite", "sh", "-c",
                        "trap 'exit 11' TERM; touch /tmp/ready; while :; do sleep 0.1; done")
    stubborn = pod.create("stubborn", "sleep", "1000")        # pid 1: SIGTERM has no effect
    eventually(lambda: cri("exec", "-s", polite, "test", "-e", "/tmp/ready", check=False).returncode == 0,
               30, "the trap to be set", interval=0.1)
    cri("stop", "--timeout", "60", polite)
    st = inspect(cri, polite)["status"]
    assert (st["state"], st["exitCode"]) == ("CONTAINER_EXITED", 11), st     # SIGTERM, handled
    cri("stop", "--timeout", "1", stubborn)
    st = inspect(cri, stubborn)["status"]
    assert (st["state"], st["exitCode"]) == ("CONTAINER_EXITED", 137), st    # SIGKILL after the grace


def _mount_lines(ids: list[str]) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if any(i in line for i in ids)]


@pytest.mark.parametrize("handler", HANDLERS)
def test_removal_leaves_nothing(cri: Crictl, pods: list[Pod], handler: str) -> None:
    pod = new_pod(cri, pods, handler, pid_mode=POD)
    cids = [pod.create(name, "sleep", "1000") for name in ("a", "b")]
    ids = [pod.id, *cids]
    pids = [pod.sandbox_pid(), *(container_pid(cri, c) for c in cids)]
    spec = pod.info()["info"]["runtimeSpec"]
    netns = next(ns["path"] for ns in spec["linux"]["namespaces"] if ns["type"] == "network")
    cgroups = [v1_cgroup_dir(p, "memory") for p in pids]
    runtime_state = [cri.daemon.handler_root(handler) / K8S_NS / i for i in ids]
    tasks = [cri.daemon.workdir / "state" / "io.containerd.runtime.v2.task" / K8S_NS / i for i in ids]
    shims = [p for p in os.listdir("/proc") if p.isdigit() and pod.id.encode() in _cmdline(p)
             and b"containerd-shim" in _cmdline(p)]
    # all of it is there while the pod runs
    assert os.path.exists(netns)
    assert all(c.is_dir() for c in cgroups) and all(s.is_dir() for s in runtime_state + tasks)
    assert len(_mount_lines(ids)) >= 3 and shims      # rootfs per container, the sandbox's /dev/shm
    cri("stopp", pod.id)
    cri("rmp", pod.id)
    pods.remove(pod)
    pod.remove_cgroup()        # the kubelet's part; an error if anything is left inside
    eventually(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids + [int(s) for s in shims]),
               10, "the pod's processes and its shim to exit", interval=0.1)
    assert not os.path.lexists(netns)
    assert [c for c in cgroups if c.exists()] == []
    assert [s for s in runtime_state + tasks if s.exists()] == []
    assert _mount_lines(ids) == []
    assert cri("ps", "-a", "-q").stdout.split() == []


def _cmdline(pid: str) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""
