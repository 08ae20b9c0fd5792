"""Shared fixtures: a busybox rootfs, a private state root, the pyrun command,
and a leak check around every test that proves nothing is left behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "src"))

from pyrun.tools.busybox_bundle import make_config, make_rootfs  # noqa: E402
from waiting import eventually  # noqa: E402

PYRUN = Path(sys.executable).parent / "pyrun"


def runs_our_interpreter(pid: int) -> bool:
    """Whether pid still runs pyrun's Python (not yet exec'd into the container's
    program). By content: the interpreter runs from a sealed read-only overlay,
    mount clone or memfd copy (launcher/pyrun-python.c, pyrun/selfexe.py), so its
    /proc/<pid>/exe is not the interpreter file's inode."""
    python = os.path.realpath(sys.executable)
    with open(f"/proc/{pid}/exe", "rb") as exe, open(python, "rb") as ours:
        if os.fstat(exe.fileno()).st_size != os.fstat(ours.fileno()).st_size:
            return False
        return exe.read() == ours.read()
ID_PREFIX = f"pyrun-t{os.getpid()}-"   # per run: parallel runs do not see each other as leaks


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("pyrun's tests start real containers and must run as root")


# --- robustness counts, printed at the end of the run ------------------------

# tests/test_{fuzz,faults,hostile,concurrency,soak}.py add to these; the
# terminal summary prints them (docs/reliability.md records a full run's).
COUNTS: dict[str, int] = {
    "examples fuzzed": 0,
    "faults injected": 0,
    "hostile containers": 0,
    "lifecycles run concurrently": 0,
    "soak lifecycles": 0,
    "tracebacks": 0,
    "leaks": 0,
}


NOTES: list[str] = []     # measurements worth a line of their own (the soak's)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if any(v for k, v in COUNTS.items() if k not in ("tracebacks", "leaks")):
        terminalreporter.section("robustness")
        terminalreporter.write_line(", ".join(f"{k}: {v}" for k, v in COUNTS.items()))
        for note in NOTES:
            terminalreporter.write_line(note)


def pytest_runtest_logreport(report: Any) -> None:
    """A failed leak check counts, in whichever test it happened."""
    if report.failed and "left behind:" in str(report.longrepr):
        COUNTS["leaks"] += 1


# --- the leak check ------------------------------------------------------------

# Daemons other tests start (a private dockerd, ip netns) mount under these;
# they are not pyrun's and may come and go while another run is going on.
_FOREIGN_MOUNTS = ("/tmp/pyrun-dockerd-", "/tmp/pyrun-ctrd-", "/tmp/pyrun-podman-", "/run/docker", "/run/containerd", "/run/netns",
                   "/var/lib/docker", "/var/lib/containers", "/run/containers")


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {m for m in (line.split()[4] for line in f) if not m.startswith(_FOREIGN_MOUNTS)}


def _cgroup_dirs() -> set[str]:
    found = set()
    for top in Path("/sys/fs/cgroup").iterdir():
        for dirpath, dirnames, _files in os.walk(top):
            for d in dirnames:
                if d.startswith(ID_PREFIX):
                    found.add(os.path.join(dirpath, d))
    return found


def _our_processes(root: Path | None = None) -> set[str]:
    """Processes in a test container's cgroup, our own children (incl.
    zombies), and any process whose command line names our state root (a
    stuck pyrun command, or an init that never reached its cgroup)."""
    me = os.getpid()
    marker = b"\0" + str(root).encode() + b"\0" if root is not None else None
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cgroup") as f:
                cgroup = f.read()
            if marker is not None:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] == "Z" and fields[1] == "1":
            continue    # dead, parent gone: the host's init reaps it (here a ~2 s poll), nothing of ours
        if ID_PREFIX in cgroup or int(fields[1]) == me or (marker is not None and marker in cmdline):
            found.add(f"{entry} {stat[:stat.rfind(')') + 1]} state={fields[0]}")
    return found


_HOST_NETNS = os.readlink("/proc/self/ns/net")


def _netns(processes: set[str]) -> set[str]:
    """/run/netns entries this run named (tests name them with ID_PREFIX),
    and network namespaces other than the host's held by our processes."""
    found = set()
    try:
        found |= {f"/run/netns/{n}" for n in os.listdir("/run/netns") if n.startswith(ID_PREFIX)}
    except OSError:
        pass
    for proc in processes:
        pid = proc.split()[0]
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if ns != _HOST_NETNS:
            found.add(f"{ns} held by {pid}")
    return found


# Links that daemons of other engineers' concurrent runs create and remove.
_FOREIGN_LINKS = ("veth", "docker", "br-", "cni", "podman", "flannel", "vxlan")


def _links() -> set[str]:
    """The host's network interfaces (what `ip -o link` lists): a device a
    container was given must come back or go away, never under a new name."""
    try:
        return {n for n in os.listdir("/sys/class/net") if not n.startswith(_FOREIGN_LINKS)}
    except OSError:
        return set()


def _fds() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return out


@dataclass
class Snapshot:
    """What a test could leave behind: mounts, cgroup directories in every
    hierarchy, processes and zombies, the test process's fds, the state
    root's entries, network namespaces and host links."""
    mounts: set[str]
    cgroups: set[str]
    processes: set[str]
    fds: set[str]
    state: set[str]
    netns: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)

    KINDS = ("mounts", "cgroups", "processes", "fds", "state", "netns", "links")

    @classmethod
    def take(cls, root: Path) -> "Snapshot":
        # "@..." files are runtime caches, not containers
        state = {n for n in os.listdir(root) if not n.startswith("@")} if root.exists() else set()
        processes = _our_processes(root)
        return cls(_mounts(), _cgroup_dirs(), processes, _fds(), state, _netns(processes), _links())

    def leaks_since(self, before: "Snapshot") -> dict[str, set[str]]:
        leaks = {name: getattr(self, name) - getattr(before, name) for name in self.KINDS}
        leaks["processes"] = _new_processes(before.processes, self.processes)
        return {k: v for k, v in leaks.items() if v}


def _new_processes(before: set[str], after: set[str]) -> set[str]:
    """Processes that are new, or that became zombies, since `before`. A process
    that was there and only changed state (running -> sleeping) is no leak."""
    def by_pid(entries: set[str]) -> dict[str, str]:
        return {e.rsplit(" state=", 1)[0]: e for e in entries}
    old = by_pid(before)
    return {e for key, e in by_pid(after).items()
            if key not in old or (e.endswith("state=Z") and not old[key].endswith("state=Z"))}


def wait_for_no_leaks(root: Path, before: Snapshot, timeout: float = 5.0) -> dict[str, set[str]]:
    """Exiting processes take a moment to leave; anything still there after that leaked."""
    leaks: dict[str, set[str]] = {}

    def gone() -> bool:
        nonlocal leaks
        leaks = Snapshot.take(root).leaks_since(before)
        return not leaks
    try:
        eventually(gone, timeout, "no leaks", interval=0.05)
    except AssertionError:
        pass            # the caller reports what is left
    return leaks


# --- running pyrun -----------------------------------------------------------

class Pyrun:
    """Runs the installed `pyrun` command against a private --root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[str] = []
        self.command = [str(PYRUN)]            # argv before --root (a subclass may run another pyrun)
        self.env: dict[str, str] | None = None   # None: ours

    def new_id(self) -> str:
        cid = ID_PREFIX + uuid.uuid4().hex[:10]
        self.created.append(cid)
        return cid

    def __call__(self, *args: str, check: bool = True, timeout: float = 30,
                 global_args: tuple[str, ...] = (), **kw: Any) -> subprocess.CompletedProcess:
        cmd = [*self.command, "--root", str(self.root), *global_args, *args]
        # Files, not pipes: a created container keeps its stdio open, as under a shim.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            kw.setdefault("text", True)
            kw.setdefault("stdout", out)
            kw.setdefault("stderr", err)
            kw.setdefault("env", self.env)
            proc = subprocess.run(cmd, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            proc.stdout = out.read() if kw["stdout"] is out else proc.stdout
            proc.stderr = err.read() if kw["stderr"] is err else proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def wait_status(self, cid: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        """The state once its status is `status`; AssertionError if it never gets there."""
        return eventually(lambda: (st := self.state(cid))["status"] == status and st,
                          timeout, f"{cid} {status}")

    def cleanup(self) -> None:
        for cid in self.created:
            self("delete", "--force", cid, check=False)


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "rootfs"
    make_rootfs(str(path))
    return path


@dataclass
class Bundle:
    path: Path
    config: dict[str, Any]

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def write(self) -> "Bundle":
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2))
        return self

    def set_args(self, *args: str) -> "Bundle":
        self.config["process"]["args"] = list(args)
        return self.write()

    def join_namespace(self, kind: str, path: str) -> "Bundle":
        """The config's `kind` namespace is the one at `path` (another
        container's, /proc/<pid>/ns/<kind>), not a new one; call write()."""
        self.config["linux"]["namespaces"] = [n if n["type"] != kind else {"type": kind, "path": path}
                                              for n in self.config["linux"]["namespaces"]]
        return self


def new_bundle(path: Path, rootfs_template: Path, *args: str) -> Bundle:
    """A fresh busybox bundle at `path` running `args` (default `true`), written."""
    shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
    return Bundle(path, make_config(list(args) or ["true"])).write()


@pytest.fixture
def bundle(tmp_path: Path, rootfs_template: Path) -> Bundle:
    """A fresh busybox bundle; tests change `config` and call write()."""
    return new_bundle(tmp_path / "bundle", rootfs_template)


@pytest.fixture
def open_bundle(rootfs_template: Path) -> Iterator[Bundle]:
    """A bundle in a directory an unprivileged (mapped) uid can traverse."""
    base = Path(tempfile.mkdtemp(prefix="pyrun-t-open-", dir="/tmp"))
    try:
        base.chmod(0o755)
        shutil.copytree(rootfs_template, base / "rootfs", symlinks=True)
        yield Bundle(base, make_config(["true"])).write()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def status_fields(text: str) -> dict[str, str]:
    """`/proc/self/status` text as {field: value}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def proc_state(pid: int) -> str:
    """The state letter of /proc/pid/stat ("Z" for a zombie), or "gone"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def untouched_by_signals(pid: int) -> dict[str, str]:
    """What /proc says about pid's fate, for asserting "no signal landed" at once.

    A fatal signal is recorded when it is sent, before kill(2) returns: the kernel
    queues SIGKILL to every thread of the doomed process (SigPnd 0x100) and leaves
    the signal in the shared set (ShdPnd); an ignored signal is dropped on the
    spot. So right after `kill` returns, a process it would have killed is gone,
    a zombie or has a signal pending; no sleep is needed, and none could help.
    Compare the result with NO_SIGNAL_LANDED."""
    try:
        fields = status_fields(Path(f"/proc/{pid}/status").read_text())
    except FileNotFoundError:
        return {"gone": "yes"}
    return {"alive": "no" if fields["State"][0] in "ZX" else "yes",
            "SigPnd": fields["SigPnd"], "ShdPnd": fields["ShdPnd"]}


NO_SIGNAL_LANDED = {"alive": "yes", "SigPnd": "0" * 16, "ShdPnd": "0" * 16}


def failed_run(pyrun: "Pyrun", bundle: Bundle) -> str:
    """`run` of the bundle as written, which must fail before the container
    starts and leave no state: its one error message (JSON log, so unescaped)."""
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid, check=False, global_args=("--log-format", "json"))
    assert res.returncode != 0, res
    assert not (pyrun.root / cid).exists()
    entries = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    return entries[0]["msg"]


@pytest.fixture(scope="session")
def state_root() -> Iterator[Path]:
    root = Path(f"/run/pyrun-tests-{os.getpid()}")
    root.mkdir(mode=0o700, exist_ok=True)     # `list` with a --root that is not there fails, as runc 1.5's
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pyrun(state_root: Path) -> Iterator[Pyrun]:
    """The pyrun command, with a leak check around the test."""
    runner = Pyrun(state_root)
    before = Snapshot.take(state_root)
    yield runner
    leaks = wait_for_no_leaks(state_root, before)
    runner.cleanup()       # a safety net for the next test; the leak still fails this one
    assert not leaks, f"left behind: {leaks}"


@pytest.fixture
def running(pyrun: Pyrun, bundle: Bundle) -> Iterator[str]:
    """A running busybox container (`sleep 300`); its ID, deleted afterwards."""
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    yield cid
    pyrun("delete", "-f", cid)
