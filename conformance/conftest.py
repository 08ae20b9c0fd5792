"""The conformance suite's harness: any runc-compatible binary (`--runtime PATH`),
busybox bundles, the in-container checker, spec citations and runtime deviations.

Self-contained on purpose: it imports nothing from tests/ (which changes with
pyrun) and from pyrun only the busybox rootfs builder.
"""
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import statements as spec_statements  # noqa: E402
from deviations import DEVIATIONS  # noqa: E402
from waiting import eventually  # noqa: E402
from pyrun.tools.busybox_bundle import make_rootfs  # noqa: E402

CHECKER = HERE / "oci-check.sh"
ID_PREFIX = f"oci-c{os.getpid()}-"
DEFAULT_RUNTIME = str(Path(sys.executable).parent / "pyrun")
_STATEMENTS = spec_statements.load()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runtime", default=os.environ.get("OCI_RUNTIME", DEFAULT_RUNTIME),
                     help="the runc-compatible binary under test (default: this venv's pyrun)")
    parser.addoption("--conformance-report", default=None,
                     help="write each test's citations and outcome to this JSON file")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spec(anchor, fragment, nth=0): the requirement a test checks")
    if os.geteuid() != 0:
        raise pytest.UsageError("the conformance suite starts real containers and must run as root")
    config._oci_results = {}    # type: ignore[attr-defined]
    # Like containerd's shim and conmon: detached container inits become our children.
    import ctypes
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def runtime_name(path: str) -> str:
    """'runc', 'pyrun', 'crun'...: the first word of `--version`, as go-runc reads it."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    first = out.split()[0] if out.split() else Path(path).name
    return first


def citations(item: pytest.Item) -> list[spec_statements.Statement]:
    out = []
    for mark in item.iter_markers("spec"):
        out.append(spec_statements.find(_STATEMENTS, *mark.args, **mark.kwargs))
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test cites a statement that exists; known deviations become strict xfails."""
    name = runtime_name(config.getoption("--runtime"))
    config._oci_runtime_name = name     # type: ignore[attr-defined]
    for item in items:
        try:
            cited = citations(item)
        except LookupError as e:
            raise pytest.UsageError(f"{item.nodeid}: {e}") from e
        if not cited:
            raise pytest.UsageError(f"{item.nodeid} cites no spec statement")
        item.user_properties.append(("spec", [s.key for s in cited]))
        config._oci_results[item.nodeid] = {"spec": [s.key for s in cited],   # type: ignore[attr-defined]
                                            "outcome": "not run"}
        reason = DEVIATIONS.get(name, {}).get(item.originalname) or \
            DEVIATIONS.get(name, {}).get(item.name)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=f"{name} deviation: {reason}", strict=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    results = item.config._oci_results     # type: ignore[attr-defined]
    entry = results.setdefault(item.nodeid, {"spec": dict(item.user_properties).get("spec", []),
                                              "outcome": "passed"})
    if rep.when == "call" and rep.passed and not hasattr(rep, "wasxfail"):
        entry["outcome"] = "passed"
    if rep.when == "call" or rep.failed or rep.skipped:
        if hasattr(rep, "wasxfail"):
            entry["outcome"] = "xfailed" if rep.skipped else "xpassed"
            entry["reason"] = rep.wasxfail
        elif rep.failed:
            entry["outcome"] = "failed" if rep.when == "call" else "error"
        elif rep.skipped:
            entry["outcome"] = "skipped"
            entry["reason"] = str(rep.longrepr[-1]) if isinstance(rep.longrepr, tuple) else ""


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--conformance-report")
    if path:
        data = {"runtime": session.config.getoption("--runtime"),
                "name": getattr(session.config, "_oci_runtime_name", "?"),
                "tests": session.config._oci_results}     # type: ignore[attr-defined]
        Path(path).write_text(json.dumps(data, indent=1))


# --- the runtime under test ---------------------------------------------------------

@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        """The `level:error` messages of a `--log-format json` stderr."""
        return self.logged("error")

    @property
    def warnings(self) -> list[str]:
        return self.logged("warning")

    def logged(self, level: str) -> list[str]:
        out = []
        for line in self.stderr.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") == level:
                out.append(entry.get("msg", ""))
        return out


@dataclass
class Runtime:
    """A runc-compatible binary with a private --root; remembers what it created."""
    path: str
    name: str
    root: Path
    created: list[str] = field(default_factory=list)

    def new_id(self) -> str:
        cid = ID_PREFIX + uuid.uuid4().hex[:10]
        self.created.append(cid)
        return cid

    def __call__(self, *args: str, check: bool = True, timeout: float = 30,
                 stdin: Any = subprocess.DEVNULL, env: dict[str, str] | None = None) -> Result:
        cmd = [self.path, "--root", str(self.root), "--log-format", "json", *args]
        # Files, not pipes: a created container keeps the runtime's stdio open.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(cmd, stdin=stdin, stdout=out, stderr=err, timeout=timeout,
                                  text=True, env=env)
            out.seek(0)
            err.seek(0)
            res = Result(proc.returncode, out.read(), err.read())
        if check and res.rc != 0:
            raise AssertionError(f"{cmd} exited {res.rc}\nstdout: {res.stdout}\nstderr: {res.stderr}")
        return res

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def wait_status(self, cid: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        """The state once its status is `status`; AssertionError if it never gets there."""
        return eventually(lambda: (st := self.state(cid))["status"] == status and st,
                          timeout, f"{cid} {status}")

    def exists(self, cid: str) -> bool:
        return self("state", cid, check=False).rc == 0

    def cleanup(self) -> None:
        for cid in self.created:
            if self.exists(cid):
                self("kill", cid, "KILL", check=False)
                self("delete", "--force", cid, check=False)


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

    def check_args(self, *extra: str) -> "Bundle":
        """Make the container's process the checker (extra: its --stat/--sysctl/... arguments)."""
        return self.set_args("sh", "/oci-check.sh", *extra)


def base_config(args: list[str]) -> dict[str, Any]:
    """runc's `spec` template, writable root, no terminal: what every test starts from."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                             for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "oci-conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


# --- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def runtime_path(pytestconfig: pytest.Config) -> str:
    return pytestconfig.getoption("--runtime")


@pytest.fixture(scope="session")
def state_root(runtime_path: str) -> Iterator[Path]:
    root = Path(f"/run/oci-conformance-{os.getpid()}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _cgroup_dirs() -> set[str]:
    found = set()
    for top in Path("/sys/fs/cgroup").iterdir():
        for dirpath, dirnames, _files in os.walk(top):
            found.update(os.path.join(dirpath, d) for d in dirnames if d.startswith(ID_PREFIX))
    return found


def _reap() -> None:
    """Reap container inits re-parented to us (we are their subreaper, as a shim is)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _processes() -> set[str]:
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                if ID_PREFIX in f.read():
                    found.add(entry)
        except OSError:
            continue
    return found


@pytest.fixture
def runtime(runtime_path: str, state_root: Path, pytestconfig: pytest.Config) -> Iterator[Runtime]:
    """The runtime under test; after the test nothing of it may remain (containers,
    cgroups, processes), which is the spec's 'delete MUST delete the resources'."""
    rt = Runtime(runtime_path, pytestconfig._oci_runtime_name, state_root)   # type: ignore[attr-defined]
    before_cgroups, before_procs = _cgroup_dirs(), _processes()
    yield rt
    rt.cleanup()       # what a failed test left; then nothing of it may remain
    found: dict[str, Any] = {}

    def nothing_left() -> bool:
        _reap()
        found.clear()
        found.update({k: v for k, v in (("containers", [c for c in rt.created if rt.exists(c)]),
                                        ("cgroups", _cgroup_dirs() - before_cgroups),
                                        ("processes", _processes() - before_procs)) if v})
        return not found
    try:
        eventually(nothing_left, 5, "nothing left", interval=0.1)
    except AssertionError:
        raise AssertionError(f"left behind after delete --force: {found}") from None


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "rootfs"
    make_rootfs(str(path))
    shutil.copy2(CHECKER, path / "oci-check.sh")
    return path


@pytest.fixture
def bundle(rootfs_template: Path) -> Iterator[Bundle]:
    """A fresh busybox bundle under /tmp, traversable by mapped uids; change `config`, write()."""
    base = Path(tempfile.mkdtemp(prefix="oci-c-bundle-", dir="/tmp"))
    try:
        base.chmod(0o755)
        shutil.copytree(rootfs_template, base / "rootfs", symlinks=True)
        yield Bundle(base, base_config(["true"])).write()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_check(runtime: Runtime, bundle: Bundle, *extra: str) -> dict[str, Any]:
    """`run` the checker as the container's process; what it saw, as a dict."""
    bundle.check_args(*extra)
    cid = runtime.new_id()
    res = runtime("run", "--bundle", str(bundle.path), cid, check=False)
    assert res.rc == 0, f"run failed ({res.rc}): {res.stderr}"
    return json.loads(res.stdout)


def fail_create(runtime: Runtime, bundle: Bundle) -> Result:
    """`create` of the bundle as written must fail and leave no container behind."""
    bundle.write()
    cid = runtime.new_id()
    res = runtime("create", "--bundle", str(bundle.path), cid, check=False)
    exists = runtime.exists(cid)
    if res.rc == 0 or exists:
        runtime("delete", "--force", cid, check=False)
    assert res.rc != 0, "create succeeded for an invalid config"
    assert not exists, "a failed create left a container behind"
    assert res.errors, f"no level:error log entry: {res.stderr!r}"
    return res


def host_ns(kind: str) -> int:
    return os.stat(f"/proc/self/ns/{kind}").st_ino


def validate(instance: Any, schema_file: str) -> None:
    """Validate against the runtime-spec's own JSON Schema (shared/oci-runtime-spec/schema),
    not pyrun's copy: the suite judges pyrun, it must not share its assumptions."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    schema_dir = spec_statements.SPEC_DIR / "schema"
    resources = []
    for path in schema_dir.glob("*.json"):
        contents = json.loads(path.read_text())
        resources.append((path.name, Resource.from_contents(contents, default_specification=DRAFT4)))
    registry = Registry().with_resources(resources)
    schema = json.loads((schema_dir / schema_file).read_text())
    jsonschema.Draft4Validator(schema, registry=registry).validate(instance)
