"""Docker drives pyrun, and runc beside it, through the same client.

One private dockerd (tests/dockerd.py) for the module, with two path runtimes:
`pyrun` (the installed command next to this interpreter) and `runc2` (Debian's
runc). Every scenario is parametrized over both, so what is asserted is what a
Docker user sees, not something special to pyrun. Docker hands both runtimes
the same --root (<exec-root>/runtime-runc/moby); at module teardown that root
must hold no pyrun container and the daemon's --cgroup-parent no cgroup.

The scenarios that need cgroup resources, the freezer and `ps` (pause/unpause,
update --memory, --memory, --pids-limit, top, stats) run like every other.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PYRUN
from daemon_cleanup import cgroups_below
from dockerd import Dockerd, dockerd_fixture, without_client_warnings
from ptys import run_on_pty
from waiting import eventually

RUNC = "/usr/sbin/runc"
RUNTIMES = {"pyrun": str(PYRUN), "runc2": RUNC}
EPERM_TEXT = "Operation not permitted"

pytestmark = pytest.mark.docker

dockerd = dockerd_fixture(runtimes=RUNTIMES, scope="module")


def both(*pyrun_marks: pytest.MarkDecorator) -> pytest.MarkDecorator:
    """Parametrize `rt` over both runtimes; `pyrun_marks` apply to pyrun only."""
    return pytest.mark.parametrize("rt", [pytest.param("pyrun", marks=list(pyrun_marks)),
                                          pytest.param("runc2")])


# --- the daemon and its teardown check -------------------------------------------

def runtime_root(daemon: Dockerd) -> Path:
    return daemon.exec_root / "runtime-runc" / "moby"


@pytest.fixture(scope="module")
def docker(dockerd: Dockerd) -> Iterator[Dockerd]:
    yield dockerd
    # Every container is gone (the tests rm -f theirs): nothing of pyrun's may remain.
    left = dockerd.docker("ps", "-aq").stdout.split()
    for cid in left:
        dockerd.docker("rm", "-f", cid, check=False)
    listed, cgroups = None, None

    def nothing_left() -> bool:
        nonlocal listed, cgroups
        listed = subprocess.run([str(PYRUN), "--root", str(runtime_root(dockerd)), "list", "-q"],
                                capture_output=True, text=True, timeout=30)
        cgroups = cgroups_below(dockerd.cgroup_parent)
        return not listed.stdout.split() and not cgroups
    with contextlib.suppress(AssertionError):       # the asserts below say what is left
        eventually(nothing_left, 10, "pyrun's containers and cgroups gone", interval=0.2)
    assert not left, f"containers left behind by the tests: {left}"
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [], f"pyrun containers left in {runtime_root(dockerd)}"
    assert cgroups == [], f"cgroups left under {dockerd.cgroup_parent}: {cgroups}"


@pytest.fixture
def name(docker: Dockerd) -> Iterator[str]:
    """A unique container name, force-removed after the test."""
    n = f"pyrun-dt-{uuid.uuid4().hex[:10]}"
    yield n
    docker.docker("rm", "-f", n, check=False)


# --- helpers ---------------------------------------------------------------------

def run(docker: Dockerd, rt: str, name: str, *opts_and_cmd: str, check: bool = False,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """`docker run --runtime rt --name name <opts> IMAGE <cmd>`; split at the image
    with "--": run(d, rt, n, "--rm", "--", "sh", "-c", "...")."""
    i = opts_and_cmd.index("--")
    opts, cmd = opts_and_cmd[:i], opts_and_cmd[i + 1:]
    return docker.docker("run", "--runtime", rt, "--name", name, *opts, docker.image, *cmd,
                         check=check, timeout=timeout)


def start_detached(docker: Dockerd, rt: str, name: str, *opts_and_cmd: str) -> str:
    r = run(docker, rt, name, "-d", *opts_and_cmd, check=True)
    return r.stdout.strip()


def inspect(docker: Dockerd, name: str, fmt: str) -> str:
    return docker.docker("inspect", "--format", fmt, name).stdout.strip()


def wait_for(pred, timeout: float = 10.0, what: str = "condition") -> None:
    eventually(pred, timeout, what, interval=0.05)


def wait_for_log(docker: Dockerd, name: str, text: str, timeout: float = 10.0) -> None:
    def seen() -> bool:
        r = docker.docker("logs", name, check=False)
        return text in r.stdout + r.stderr
    wait_for(seen, timeout, f"{text!r} in the logs of {name}")


def in_pty(docker: Dockerd, *args: str, timeout: float = 30) -> tuple[int, str]:
    """Run the docker client with a pty as its controlling terminal and stdio;
    returns (exit status, everything written to the terminal)."""
    rc, out = run_on_pty([docker.cli, "-H", docker.host, *args], timeout=timeout, env=docker.env(),
                         controlling=True)
    # The client's host warnings share the terminal with the container's output.
    return rc, without_client_warnings(out.replace("\r\n", "\n"))


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def api_get(docker: Dockerd, url: str) -> dict:
    conn = _UnixHTTP(str(docker.socket))
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, f"GET {url}: {resp.status} {body!r}"
        return json.loads(body)
    finally:
        conn.close()


# --- run, exit codes, logs -------------------------------------------------------

@both()
def test_run_output_and_exit_code(docker: Dockerd, rt: str, name: str) -> None:
    r = run(docker, rt, name, "--rm", "--", "sh", "-c", "echo hello; echo oops >&2; exit 3")
    assert r.returncode == 3, r
    assert r.stdout == "hello\n", r
    assert r.stderr == "oops\n", r
    r = run(docker, rt, name, "--rm", "--", "true")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r


@both()
def test_missing_executable_is_127(docker: Dockerd, rt: str, name: str) -> None:
    r = run(docker, rt, name, "--rm", "--", "no-such-command-xyz")
    assert r.returncode == 127, r
    assert "executable file not found" in r.stderr, r.stderr
    assert "no-such-command-xyz" in r.stderr, r.stderr


@both()
def test_non_executable_file_is_126(docker: Dockerd, rt: str, name: str) -> None:
    r = run(docker, rt, name, "--rm", "--", "/etc/passwd")
    assert r.returncode == 126, r
    assert "permission denied" in r.stderr, r.stderr


@both()
def test_detached_and_logs(docker: Dockerd, rt: str, name: str) -> None:
    cid = start_detached(docker, rt, name, "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 5")
    assert len(cid) == 64, cid
    assert docker.docker("wait", name).stdout.strip() == "5"
    logs = docker.docker("logs", name)
    assert logs.stdout == "to-out\n", logs
    assert logs.stderr == "to-err\n", logs


def kill_stuck_runtime(docker: Dockerd, cidfile: Path) -> None:
    """SIGKILL, by pid, any process still running the runtime's command line for
    this container (a created init blocked before exec) so that Docker can clean up.
    (`docker inspect` would block on the container's lock while the start hangs.)"""
    try:
        cid = cidfile.read_text().strip()
    except OSError:
        return
    if not cid:
        return
    marker = f"--root {runtime_root(docker)}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker in cmdline and cid.encode() in cmdline:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


@both()
def test_run_it_through_a_pty(docker: Dockerd, rt: str, name: str) -> None:
    cidfile = docker.scratch / f"cid-{name}"
    try:
        rc, out = in_pty(docker, "run", "-it", "--rm", "--runtime", rt, "--name", name,
                         "--cidfile", str(cidfile), docker.image,
                         "sh", "-c", "tty; echo hi; exit 4", timeout=8)
    finally:
        kill_stuck_runtime(docker, cidfile)
    assert rc == 4, out
    lines = out.splitlines()
    assert "/dev/pts/0" in lines, out
    assert "hi" in lines, out


# --- exec ------------------------------------------------------------------------

@both()
def test_exec(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "-e", "FROM_RUN=yes", "--", "sleep", "1000")
    r = docker.docker("exec", "-e", "FROM_EXEC=1", "-w", "/tmp", name, "sh", "-c",
                      'echo "$FROM_RUN $FROM_EXEC $(pwd)"; cat /proc/1/comm; exit 7', check=False)
    assert r.returncode == 7, r
    assert r.stdout == "yes 1 /tmp\nsleep\n", r
    # Docker reports any exec start failure as 126, with the runtime's text.
    r = docker.docker("exec", name, "no-such-command-xyz", check=False)
    assert r.returncode == 126, r
    assert "executable file not found" in r.stdout + r.stderr, r
    # A detached exec keeps running after the client returns.
    docker.docker("exec", "-d", name, "sh", "-c", "echo detached > /tmp/d")
    wait_for(lambda: docker.docker("exec", name, "cat", "/tmp/d", check=False).stdout == "detached\n",
             what="the detached exec")


@both()
def test_exec_it_through_a_pty(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "--", "sleep", "1000")
    rc, out = in_pty(docker, "exec", "-it", name, "sh", "-c", "tty; echo hi; exit 2")
    assert rc == 2, out
    lines = out.splitlines()
    assert any(line.startswith("/dev/pts/") for line in lines), out
    assert "hi" in lines, out


# --- life cycle ------------------------------------------------------------------

TRAP_TERM = 'trap "echo got TERM; exit 0" TERM; echo started; sleep 1000 & wait'


@both()
def test_stop_sends_sigterm(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "--", "sh", "-c", TRAP_TERM)
    wait_for_log(docker, name, "started")
    t0 = time.monotonic()
    docker.docker("stop", "-t", "20", name)
    assert time.monotonic() - t0 < 10, "stop waited for the timeout: SIGTERM was not delivered"
    assert inspect(docker, name, "{{.State.Running}} {{.State.ExitCode}}") == "false 0"
    assert docker.docker("logs", name).stdout == "started\ngot TERM\n"


@both()
def test_kill(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "--", "sleep", "1000")
    docker.docker("kill", name)
    assert docker.docker("wait", name).stdout.strip() == "137"
    assert inspect(docker, name, "{{.State.Running}} {{.State.ExitCode}}") == "false 137"
    # a signal of choice, caught by the container
    name2 = name + "-usr1"
    try:
        start_detached(docker, rt, name2, "--", "sh", "-c",
                       'trap "echo got USR1; exit 9" USR1; echo started; sleep 1000 & wait')
        wait_for_log(docker, name2, "started")
        docker.docker("kill", "-s", "USR1", name2)
        assert docker.docker("wait", name2).stdout.strip() == "9"
        assert docker.docker("logs", name2).stdout == "started\ngot USR1\n"
    finally:
        docker.docker("rm", "-f", name2, check=False)


@both()
def test_restart(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "--", "sh", "-c", TRAP_TERM)
    wait_for_log(docker, name, "started")
    pid1 = inspect(docker, name, "{{.State.Pid}}")
    docker.docker("restart", "-t", "20", name)
    assert inspect(docker, name, "{{.State.Running}} {{.RestartCount}}") == "true 0"
    assert inspect(docker, name, "{{.State.Pid}}") != pid1
    wait_for(lambda: docker.docker("logs", name).stdout == "started\ngot TERM\nstarted\n",
             what="the second start")
    assert docker.docker("exec", name, "echo", "alive").stdout == "alive\n"


@both()
def test_rm_leaves_nothing(docker: Dockerd, rt: str, name: str) -> None:
    cidfile = docker.scratch / f"cid-{name}"
    r = run(docker, rt, name, "--rm", "--cidfile", str(cidfile), "--", "true", check=True)
    assert r.returncode == 0
    cid = cidfile.read_text().strip()
    assert docker.docker("ps", "-aq", "--filter", f"name={name}").stdout.strip() == ""
    assert docker.docker("inspect", name, check=False).returncode != 0
    # the runtime forgot it too: no state directory, no cgroup
    state = runtime_root(docker) / cid
    wait_for(lambda: not state.exists(), what=f"{state} to go")
    wait_for(lambda: not [d for d in docker._our_cgroups() if cid in d], what="its cgroups to go")


# --- confinement -----------------------------------------------------------------

@both()
def test_read_only_rootfs(docker: Dockerd, rt: str, name: str) -> None:
    r = run(docker, rt, name, "--rm", "--read-only", "--", "sh", "-c",
            "touch /x 2>&1; echo rc=$?; touch /tmp/y 2>&1; echo tmp=$?")
    assert r.returncode == 0, r
    assert "touch: /x: Read-only file system" in r.stdout, r.stdout
    assert "rc=1" in r.stdout, r.stdout
    # without --tmpfs, /tmp is part of the read-only rootfs too
    assert "tmp=1" in r.stdout, r.stdout


@both()
def test_user(docker: Dockerd, rt: str, name: str) -> None:
    r = run(docker, rt, name, "--rm", "--user", "1000:1000", "--", "sh", "-c", "id; touch /x")
    assert r.stdout.splitlines()[0].startswith("uid=1000 gid=1000"), r
    assert r.returncode == 1, r
    assert "Permission denied" in r.stderr, r


@both()
def test_capabilities(docker: Dockerd, rt: str, name: str) -> None:
    r = run(docker, rt, name, "--rm", "--cap-drop", "ALL", "--cap-add", "NET_RAW", "--",
            "grep", "^Cap", "/proc/self/status", check=True)
    caps = dict(line.split(":\t") for line in r.stdout.splitlines())
    net_raw = f"{1 << 13:016x}"
    assert caps["CapEff"] == net_raw, r.stdout
    assert caps["CapPrm"] == net_raw, r.stdout
    assert caps["CapBnd"] == net_raw, r.stdout


@both()
def test_seccomp_profile(docker: Dockerd, rt: str, name: str) -> None:
    profile = docker.scratch / "deny-chmod.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"],
                      "action": "SCMP_ACT_ERRNO"}],
    }))
    r = run(docker, rt, name, "--rm", "--security-opt", f"seccomp={profile}", "--", "sh", "-c",
            "grep Seccomp: /proc/self/status; touch /tmp/x; chmod 600 /tmp/x; echo rc=$?")
    assert r.returncode == 0, r
    assert "Seccomp:\t2" in r.stdout.splitlines(), r.stdout
    assert f"chmod: /tmp/x: {EPERM_TEXT}" in r.stderr, r
    assert "rc=1" in r.stdout, r


@both()
def test_bind_volume(docker: Dockerd, rt: str, name: str, tmp_path: Path) -> None:
    host = tmp_path / "data"
    host.mkdir()
    (host / "from-host").write_text("hello from the host\n")
    r = run(docker, rt, name, "--rm", "-v", f"{host}:/data", "--", "sh", "-c",
            "cat /data/from-host; echo written inside > /data/from-container")
    assert r.returncode == 0, r
    assert r.stdout == "hello from the host\n", r
    assert (host / "from-container").read_text() == "written inside\n"


def _interfaces(text: str) -> set[str]:
    """Interface names from /proc/net/dev."""
    return {line.split(":")[0].strip() for line in text.splitlines()[2:] if ":" in line}


@both()
def test_network_none(docker: Dockerd, rt: str, name: str) -> None:
    r = run(docker, rt, name, "--rm", "--network", "none", "--", "cat", "/proc/net/dev", check=True)
    assert _interfaces(r.stdout) == {"lo"}, r.stdout


@both()
def test_network_host(docker: Dockerd, rt: str, name: str) -> None:
    with open("/proc/net/route") as f:
        default = [line.split()[0] for line in f.readlines()[1:] if line.split()[1] == "00000000"]
    host_ifaces = _interfaces(Path("/proc/net/dev").read_text())
    r = run(docker, rt, name, "--rm", "--network", "host", "--", "sh", "-c",
            "cat /proc/net/dev; cat /proc/sys/kernel/hostname", check=True)
    seen = _interfaces(r.stdout)
    assert seen - {"lo"}, r.stdout
    assert set(default) <= seen, (default, r.stdout)
    # interfaces come and go (other tests make veths); the stable ones are shared
    assert len(seen & host_ifaces) >= len(host_ifaces) // 2, (seen, host_ifaces)


@pytest.fixture
def bridge_network(docker: Dockerd) -> Iterator[str]:
    """A private bridge network (its own host bridge link, removed afterwards)."""
    net = f"pyrun-net-{uuid.uuid4().hex[:8]}"
    third = 100 + os.getpid() % 100
    docker.docker("network", "create", "--driver", "bridge",
                  "--subnet", f"10.213.{third}.0/24", net)
    yield net
    docker.docker("network", "rm", net, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_get(port: int, timeout: float = 20.0) -> str:
    def get() -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/index.html")
        body = conn.getresponse().read().decode()
        conn.close()
        return body or "(empty)"
    return eventually(get, timeout, f"an answer on port {port}", interval=0.1,
                      ignore=(OSError, http.client.HTTPException))


@both()
def test_published_port(docker: Dockerd, rt: str, name: str, bridge_network: str) -> None:
    """-p HOST:CONTAINER: the container joins a bridge through Docker's prestart
    hook (libnetwork-setkey) and docker-proxy forwards host loopback to it."""
    port = _free_port()
    start_detached(docker, rt, name, "--network", bridge_network,
                   "-p", f"127.0.0.1:{port}:8080", "--", "sh", "-c",
                   "mkdir -p /www && echo pong-$(hostname) > /www/index.html && "
                   "exec httpd -f -p 8080 -h /www")
    hostname = inspect(docker, name, "{{.Config.Hostname}}")
    assert _http_get(port).strip() == f"pong-{hostname}"
    ifaces = docker.docker("exec", name, "cat", "/proc/net/dev").stdout
    assert "eth0" in _interfaces(ifaces), ifaces
    docker.docker("rm", "-f", name)


@both()
def test_failing_create_shows_runtime_text(docker: Dockerd, rt: str, name: str,
                                           tmp_path: Path) -> None:
    # A host file bound onto a directory of the image: Docker does not check it,
    # the runtime's mount fails with ENOTDIR inside the container's init, and
    # Docker reports "OCI runtime create failed: <the runtime's last error>".
    src = tmp_path / "a-file"
    src.write_text("x\n")
    r = run(docker, rt, name, "--rm", "-v", f"{src}:/bin", "--", "true")
    # Docker 28 maps only exec-lookup failures to 126/127; this one is 125.
    assert r.returncode == 125, r
    err = r.stderr
    assert "failed to create shim task: OCI runtime create failed: " in err, err
    assert f"{rt.rstrip('2')} create failed: " in err, err
    assert "error during container init: error mounting " in err and str(src) in err, err
    assert "to rootfs at " in err and "/bin" in err, err
    assert "not a directory" in err, err
    # Docker recognises the runtime's ENOTDIR text and adds its hint
    assert "Are you trying to mount a directory onto a file" in err, err
    assert docker.docker("ps", "-aq", "--filter", f"name={name}").stdout.strip() == ""


# --- cgroup resources, freezer, ps (issue #4) ------------------------------------

@both()
def test_pause_unpause(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "--", "sh", "-c",
                   "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done")
    docker.docker("pause", name)
    assert inspect(docker, name, "{{.State.Status}}") == "paused"
    # the freezer stops the loop; no exec into a paused container, so read from the host
    pid = inspect(docker, name, "{{.State.Pid}}")
    # the kernel's own word that every task is held, not a loop watched standing still
    assert _freezer_state(pid) in ("FROZEN", "frozen 1")
    n1 = Path(f"/proc/{pid}/root/tmp/n").read_text()
    docker.docker("unpause", name)
    assert inspect(docker, name, "{{.State.Status}}") == "running"
    wait_for(lambda: Path(f"/proc/{pid}/root/tmp/n").read_text() != n1, what="the loop to resume")


@both()
def test_update_memory(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "--memory", "200m", "--memory-swap", "-1", "--",
                   "sleep", "1000")
    docker.docker("update", "--memory", "120m", "--memory-swap", "-1", name)
    assert inspect(docker, name, "{{.HostConfig.Memory}}") == str(120 << 20)
    limit = docker.docker("exec", name, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert limit.stdout.strip() == str(120 << 20), limit


@both()
def test_memory_limit_kills_a_hog(docker: Dockerd, rt: str, name: str) -> None:
    # `tail` keeps the whole newline-free stream in memory: 300 MB, bounded, so that
    # without a limit it simply succeeds instead of eating the host.
    r = run(docker, rt, name, "--memory", "100m", "--memory-swap", "100m", "--", "sh", "-c",
            "head -c 300000000 /dev/zero | tail > /dev/null", timeout=60)
    assert r.returncode == 137, r
    assert inspect(docker, name, "{{.State.OOMKilled}}") == "true"


@both()
def test_pids_limit(docker: Dockerd, rt: str, name: str) -> None:
    # busybox sh gives up (exit 2) on the first fork that fails
    r = run(docker, rt, name, "--rm", "--pids-limit", "8", "--", "sh", "-c",
            "cat /sys/fs/cgroup/pids/pids.max; for i in $(seq 20); do sleep 2 & done; wait")
    assert r.stdout.split()[:1] == ["8"], r
    assert r.returncode == 2, r
    assert "can't fork: Resource temporarily unavailable" in r.stderr, r


@both()
def test_top(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "--", "sh", "-c", "sleep 1000 & sleep 2000")
    r = docker.docker("top", name)
    assert "sleep 1000" in r.stdout and "sleep 2000" in r.stdout, r.stdout


def _freezer_state(pid: str) -> str:
    """The freezer's state for pid's cgroup: v1 freezer.state, or v2 cgroup.events' frozen line."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip()
    path = next(line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::"))[3:]
    events = Path(f"/sys/fs/cgroup{path}/cgroup.events").read_text().splitlines()
    return next(line for line in events if line.startswith("frozen "))


def _stats(docker: Dockerd, name: str) -> dict:
    return api_get(docker, f"/containers/{name}/stats?stream=false&one-shot=true")


@both()
def test_stats_move(docker: Dockerd, rt: str, name: str) -> None:
    # The shim reads the container's cgroups itself; the runtime only has to put
    # the container in the cgroup Docker asked for.
    start_detached(docker, rt, name, "--", "sh", "-c", "while true; do :; done")
    cpu1 = _stats(docker, name)["cpu_stats"]["cpu_usage"]["total_usage"]
    # the busy loop's CPU time shows up in the shim's numbers: wait for 0.2 s more of it
    s2 = eventually(lambda: (s := _stats(docker, name))["cpu_stats"]["cpu_usage"]["total_usage"]
                    - cpu1 > 200_000_000 and s, 20, "0.2 s more CPU in docker's stats", interval=0.2)
    assert s2["memory_stats"].get("usage", 0) > 0, s2["memory_stats"]
    assert s2["pids_stats"].get("current", 0) >= 1, s2["pids_stats"]
    cli = docker.docker("stats", "--no-stream", "--format", "{{.PIDs}} {{.CPUPerc}}", name)
    pids, cpu = cli.stdout.split()
    assert pids != "0" and float(cpu.rstrip("%")) > 0, cli.stdout


@both()
def test_stats_show_limits(docker: Dockerd, rt: str, name: str) -> None:
    start_detached(docker, rt, name, "--memory", "300m", "--pids-limit", "50", "--",
                   "sleep", "1000")
    s = _stats(docker, name)
    assert s["memory_stats"].get("limit") == 300 << 20, s["memory_stats"]
    assert s["pids_stats"].get("limit") == 50, s["pids_stats"]
