"""Drop-in fidelity of the command line: what containerd's shim, Docker, podman,
scripts and runc's own bats suite see of the runtime, byte for byte where they
parse it (exit codes, `<name> version X`, `list --format json`, the error
entries), in runc's shape where people read it (help screens).

Most tests run against pyrun and against runc itself (Debian's 1.1.5 and the
current 1.4.3), each with its own --root, so the expectation is runc's, not
ours; where the two runc releases differ, pyrun follows 1.4.3.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import json
import os
import platform
import re
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import ID_PREFIX, PYRUN, REPO, SHARED, Bundle
from waiting import eventually

RUNC_115 = "/usr/sbin/runc"
RUNC_143_GZ = SHARED / "upstream" / "runc-1.4.3-amd64.gz"
RUNTIMES = ["pyrun", "runc-1.1.5", "runc-1.4.3"]
SECTIONS = ("NAME", "USAGE", "VERSION", "DESCRIPTION", "COMMANDS", "GLOBAL OPTIONS", "OPTIONS")
COMMANDS = ("create", "start", "run", "exec", "state", "kill", "delete", "list", "spec", "features",
            "update", "pause", "resume", "ps", "events")


@pytest.fixture(scope="session")
def runc_143(tmp_path_factory: pytest.TempPathFactory) -> str:
    """runc 1.4.3, unpacked as `runc` (its help names itself after argv[0])."""
    if not RUNC_143_GZ.exists():
        pytest.skip(f"{RUNC_143_GZ} is not there")
    path = tmp_path_factory.mktemp("runc-1.4.3") / "runc"
    path.write_bytes(gzip.decompress(RUNC_143_GZ.read_bytes()))
    path.chmod(0o755)
    return str(path)


class Runtime:
    """One runc-compatible binary with a private --root (pyrun's is the
    fixture's, whose leak check covers every runtime's containers: their IDs
    carry ID_PREFIX, so their cgroups and processes are seen too)."""

    def __init__(self, name: str, binary: str, root: Path) -> None:
        self.name, self.binary, self.root = name, binary, root
        self.created: list[str] = []

    @property
    def program(self) -> str:
        return "pyrun" if self.name == "pyrun" else "runc"

    def init_error(self, text: str, step: str) -> str:
        """An init failure's tail: runc's text, then pyrun's step name after it."""
        return f"{text} (step: {step})" if self.name == "pyrun" else text

    def new_id(self) -> str:
        cid = ID_PREFIX + uuid.uuid4().hex[:10]
        self.created.append(cid)
        return cid

    def __call__(self, *args: str, check: bool = True, global_args: tuple[str, ...] = (),
                 input: str | None = None) -> subprocess.CompletedProcess:
        cmd = [self.binary, "--root", str(self.root), *global_args, *args]
        # Files, not pipes: a created container keeps its stdio open.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(cmd, stdout=out, stderr=err, text=True, timeout=60,
                                  input=input, stdin=None if input is not None else subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            proc.stdout, proc.stderr = out.read(), err.read()
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def prepare(self, bundle: Bundle) -> Bundle:
        """Debian's runc 1.1.5 refuses ociVersions newer than its own."""
        if self.name == "runc-1.1.5":
            bundle.config["ociVersion"] = "1.0.2"
        return bundle.write()

    def status(self, cid: str) -> str:
        return json.loads(self("state", cid).stdout)["status"]

    def wait_status(self, cid: str, status: str, timeout: float = 10.0) -> None:
        eventually(lambda: self.status(cid) == status, timeout=timeout, what=f"{cid} became {status}")

    def cleanup(self) -> None:
        for cid in self.created:
            self("delete", "--force", cid, check=False)


@pytest.fixture(params=RUNTIMES)
def runtime(request, pyrun, tmp_path: Path) -> Any:
    if request.param == "pyrun":
        rt = Runtime("pyrun", str(PYRUN), pyrun.root)
    else:
        binary = RUNC_115 if request.param == "runc-1.1.5" else request.getfixturevalue("runc_143")
        if not os.path.exists(binary):
            pytest.skip(f"{binary} is not there")
        rt = Runtime(request.param, binary, tmp_path / "runc-root")
        rt.root.mkdir(mode=0o700)     # runc 1.4.3's `list` fails on a root that is not there yet
    yield rt
    rt.cleanup()


def error_entries(res: subprocess.CompletedProcess) -> list[dict[str, Any]]:
    """The JSON log entries on stderr (the tests pass --log-format json)."""
    return [json.loads(line) for line in res.stderr.splitlines() if line.strip()]


def one_error(res: subprocess.CompletedProcess) -> str:
    entries = error_entries(res)
    assert [e["level"] for e in entries] == ["error"], res.stderr
    return entries[0]["msg"]


def sections(text: str) -> list[str]:
    return [line[:-1] for line in text.splitlines() if line.endswith(":") and line[:-1] in SECTIONS]


# --- kill ID 0 ------------------------------------------------------------------

def test_kill_signal_0_tells_whether_the_container_is_alive(runtime, bundle):
    """runc: `kill ID 0` exits 0 while the init lives (created or running), 1
    with "container not running" once it has stopped; `kill -a ID 0` exits 0
    in all three states (the stopped container's cgroup is still there).
    pyrun said "unknown signal '0'" in every state."""
    runtime.prepare(bundle).set_args("sleep", "300")
    cid = runtime.new_id()
    runtime("create", "-b", str(bundle.path), cid)
    assert runtime("kill", cid, "0").returncode == 0
    assert runtime("kill", "-a", cid, "0").returncode == 0
    assert runtime.status(cid) == "created"        # signal 0 delivered nothing
    runtime("start", cid)
    assert runtime("kill", cid, "0").returncode == 0
    assert runtime("kill", "--all", cid, "0").returncode == 0
    assert runtime.status(cid) == "running"
    runtime("kill", cid, "KILL")
    runtime.wait_status(cid, "stopped")
    res = runtime("kill", cid, "0", check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1
    assert one_error(res) == "container not running"
    assert runtime("kill", "-a", cid, "0").returncode == 0
    res = runtime("kill", runtime.new_id(), "0", check=False, global_args=("--log-format", "json"))
    assert (res.returncode, one_error(res)) == (1, "container does not exist")
    res = runtime("kill", cid, "SIGFROB", check=False, global_args=("--log-format", "json"))
    assert (res.returncode, one_error(res)) == (1, 'unknown signal "SIGFROB"')
    runtime("delete", cid)


# --- flags after the arguments (urfave/cli's reordering) -------------------------

def test_flags_may_follow_the_container_id(runtime, bundle):
    """runc (urfave/cli v1) moves a command's flags in front of its arguments
    (all commands but exec and ps): `update ID --memory 100m` works. The word
    after a flag is taken as its value even for a boolean flag, so
    `kill ID -a KILL` names a container "KILL". pyrun refused
    `update ID --memory ...` with a usage error."""
    runtime.prepare(bundle).set_args("sleep", "300")
    cid = runtime.new_id()
    runtime("run", "-d", "-b", str(bundle.path), cid)
    runtime("update", cid, "--memory", "100m", "--pids-limit=42")
    limit = runtime("exec", cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
    pids = runtime("exec", cid, "cat", "/sys/fs/cgroup/pids/pids.max").stdout
    assert (limit, pids) == (f"{100 << 20}\n", "42\n")
    res = runtime("kill", cid, "-a", "KILL", check=False, global_args=("--log-format", "json"))
    assert (res.returncode, one_error(res)) == (1, "container does not exist")
    assert runtime.status(cid) == "running"
    runtime("delete", cid, "--force")
    assert not (runtime.root / cid).exists()


# --- exec failures -----------------------------------------------------------------

def _exec_fail(runtime, *args: str) -> str:
    res = runtime("exec", *args, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 255, res
    assert res.stdout == ""
    return one_error(res)


def test_every_exec_failure_exits_255_with_one_line(runtime, bundle, tmp_path):
    """runc: fatalWithCode(fmt.Errorf("exec failed: %w", err), 255) for every
    exec failure but a bad command line. pyrun exited 1, and a pid file in a
    missing directory gave a Python traceback."""
    runtime.prepare(bundle).set_args("sleep", "300")
    cid = runtime.new_id()
    runtime("run", "-d", "-b", str(bundle.path), cid)
    bad = tmp_path / "bad.json"
    bad.write_text("{bad")
    assert _exec_fail(runtime, "-p", str(bad), cid).startswith("exec failed: ")
    assert _exec_fail(runtime, "-p", "/nonexistent.json", cid) == \
        "exec failed: open /nonexistent.json: no such file or directory"
    assert _exec_fail(runtime, ID_PREFIX + "missing", "true") == "exec failed: container does not exist"
    assert _exec_fail(runtime, "--pid-file", "/nonexistent/dir/x", cid, "true") == \
        "exec failed: open /nonexistent/dir/.x: no such file or directory"
    msg = _exec_fail(runtime, "--cwd", "/nonexistent", cid, "true")
    assert msg.startswith("exec failed: unable to start container process: ") and "/nonexistent" in msg, msg
    msg = _exec_fail(runtime, cid, "/nonexistent-bin")
    assert msg.startswith("exec failed: unable to start container process: ")
    assert msg.endswith(runtime.init_error('exec: "/nonexistent-bin": stat /nonexistent-bin: no such file or directory',
                                           "look up executable")), msg
    old = runtime.name == "runc-1.1.5"
    assert _exec_fail(runtime, "--user", "nobody", cid, "true") == (
        'exec failed: parsing nobody as int for uid failed: strconv.Atoi: parsing "nobody": invalid syntax' if old
        else 'exec failed: bad uid: strconv.Atoi: parsing "nobody": invalid syntax')
    assert _exec_fail(runtime, "--user", "0:staff", cid, "true") == (
        'exec failed: parsing staff as int for gid failed: strconv.Atoi: parsing "staff": invalid syntax' if old
        else 'exec failed: bad gid: strconv.Atoi: parsing "staff": invalid syntax')
    assert _exec_fail(runtime, cid) == ("exec failed: process args cannot be empty" if old
                                        else "exec failed: exec args cannot be empty")
    # a bad -g is a bad command line (an Int64Slice flag): Incorrect Usage, exit 1
    res = runtime("exec", "-g", "staff", cid, "true", check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1
    assert res.stdout.startswith('Incorrect Usage: invalid value "staff" for flag -g: ')
    assert one_error(res) == 'invalid value "staff" for flag -g: strconv.ParseInt: parsing "staff": invalid syntax'
    runtime("pause", cid)
    assert _exec_fail(runtime, cid, "true") == \
        "exec failed: cannot exec in a paused container (use --ignore-paused to override)"
    runtime("resume", cid)
    runtime("kill", cid, "KILL")
    runtime.wait_status(cid, "stopped")
    assert _exec_fail(runtime, cid, "true") == "exec failed: cannot exec in a stopped container"
    assert sorted(os.listdir(runtime.root)) == sorted([cid] + [n for n in os.listdir(runtime.root)
                                                              if n.startswith("@")])
    runtime("delete", cid)


def test_exec_pid_file_failure_kills_the_process_before_it_runs(pyrun, bundle, tmp_path):
    """pyrun writes --pid-file before it lets the exec'd process go; when that
    fails the process never runs and nothing of it is left. With pyrun's explicit kill
    (container/exec_.py _abandon) removed this still passes: the process,
    never released, also exits when pyrun's end of the channel closes. The
    test checks the outcome either way."""
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    res = pyrun("exec", "--pid-file", str(tmp_path / "missing" / "x"), cid, "touch", "/ran",
                check=False, global_args=("--log-format", "json"))
    assert res.returncode == 255
    assert one_error(res) == f"exec failed: open {tmp_path}/missing/.x: no such file or directory"
    assert not (bundle.rootfs / "ran").exists()
    init = pyrun.state(cid)["pid"]
    with open(f"/proc/{init}/cgroup") as f:
        pids_cgroup = next(line.split(":", 2)[2].strip() for line in f if line.split(":")[1] == "pids")
    procs = Path(f"/sys/fs/cgroup/pids{pids_cgroup}/cgroup.procs").read_text().split()
    assert procs == [str(init)]
    pyrun("delete", "--force", cid)


# --- errors with runc's words ---------------------------------------------------------

def test_start_failures_say_unable_to_start_container_process(runtime, bundle):
    """runc: "<runc> run failed: unable to start container process: ..." for
    anything that fails between fork and ready; hooks: "error running hook"."""
    runtime.prepare(bundle).set_args("/nonexistent")
    cid = runtime.new_id()
    res = runtime("run", "-b", str(bundle.path), cid, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1
    msg = one_error(res)
    assert msg.startswith(f"{runtime.program} run failed: unable to start container process: "), msg
    assert msg.endswith(runtime.init_error('exec: "/nonexistent": stat /nonexistent: no such file or directory',
                                           "look up executable")), msg
    assert not (runtime.root / cid).exists()

    bundle.config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}
    runtime.prepare(bundle).set_args("true")
    res = runtime("run", "-b", str(bundle.path), cid, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1
    msg = one_error(res)
    assert msg.startswith(f"{runtime.program} run failed: unable to start container process: "), msg
    hook = ("error running hook #0: error running hook: exit status 3" if runtime.name == "runc-1.1.5"
            else "error running prestart hook #0: exit status 3")
    assert hook in msg, msg
    assert not (runtime.root / cid).exists()


# --- help, version, unknown commands and flags ---------------------------------------

def test_version_has_runcs_shape(runtime):
    """Callers parse `<name> version X`; runc 1.4.3 prints five lines:
    version, commit, spec, go, libseccomp. pyrun printed three."""
    lines = runtime("--version").stdout.splitlines()
    keys = [line.split(":")[0] if ":" in line else line.rsplit(" ", 1)[0] for line in lines]
    toolchain = "python" if runtime.name == "pyrun" else "go"
    assert keys == [f"{runtime.program} version", "commit", "spec", toolchain, "libseccomp"], lines


def test_pyrun_version_values():
    """The values come from git, the interpreter and libseccomp itself."""
    out = subprocess.run([str(PYRUN), "--version"], capture_output=True, text=True, check=True).stdout
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    seccomp = ".".join(str(n) for n in lib.seccomp_version().contents)
    import pyrun
    assert out == (f"pyrun version {pyrun.__version__}\n"
                   f"commit: {head.stdout.strip() if head.returncode == 0 else 'unknown'}\n"
                   f"spec: 1.3.0\npython: {platform.python_version()}\nlibseccomp: {seccomp}\n")


def test_app_help(runtime):
    """`--help`, `-h`, `help` and no arguments at all: the same screen, exit 0."""
    screens = [runtime(*args) for args in (["--help"], ["-h"], ["help"], ["h"], [])]
    assert {s.returncode for s in screens} == {0}
    assert len({s.stdout for s in screens}) == 1
    text = screens[0].stdout
    assert sections(text) == ["NAME", "USAGE", "VERSION", "COMMANDS", "GLOBAL OPTIONS"]
    assert text.startswith(f"NAME:\n   {runtime.program} - ")
    assert f"\nUSAGE:\n   {runtime.program} [global options] command [command options] [arguments...]\n" in text
    listed = re.findall(r"^   ([a-z]+)(?:, h)?  +\S", text.split("\nCOMMANDS:\n")[1].split("\n\n")[0], re.M)
    assert set(COMMANDS) <= set(listed)
    for flag in ("--debug", "--log value", "--log-format value", "--root value", "--systemd-cgroup",
                 "--rootless value", "--help, -h", "--version, -v"):
        assert f"\n   {flag}  " in text, flag


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_runcs_sections(pyrun, command, runc_143):
    """`help CMD`, `CMD -h` and `CMD --help`: one screen, exit 0, with the
    sections and the (visible) flags runc 1.4.3 shows for that command.
    pyrun had no help but its one usage line."""
    screens = [pyrun("help", command), pyrun(command, "-h"), pyrun(command, "--help"),
               pyrun(command, "x", "--help") if command not in ("exec", "ps") else pyrun(command, "--help")]
    assert len({s.stdout for s in screens}) == 1
    text = screens[0].stdout
    reference = subprocess.run([runc_143, "help", command], capture_output=True, text=True, check=True).stdout
    assert sections(text) == sections(reference)
    assert text.startswith(f"NAME:\n   pyrun {command} - ")
    assert f"\nUSAGE:\n   pyrun {command} " in text

    def options(screen: str) -> list[str]:
        return sorted(re.findall(r"^   (--[a-z0-9-]+)", screen.split("\nOPTIONS:\n")[-1], re.M)) \
            if "\nOPTIONS:\n" in screen else []
    assert options(text) == options(reference)


def test_every_flag_has_help_words():
    """help.py's words cover each command's FLAGS, and name no flag that is gone."""
    from pyrun.cli import help as text
    from pyrun.cli.main import GLOBAL_FLAGS
    for command in COMMANDS:
        names = {f.names[0] for f in text.command_flags(command)}
        assert names == set(text.COMMANDS[command][3]), command
    assert {f.names[0] for f in GLOBAL_FLAGS} - set(text.HIDDEN_GLOBALS) == set(text.GLOBAL_HELP)


def test_unknown_commands_and_flags(runtime):
    """urfave/cli's answers, which scripts and runc's bats suite check."""
    log = ("--log-format", "json")
    for args in (["frobnicate"], ["help", "frobnicate"]):
        res = runtime(*args, check=False, global_args=log)
        assert (res.returncode, res.stdout) == (3, ""), res
        assert one_error(res).strip() == "No help topic for 'frobnicate'"

    res = runtime("--frobnicate", "list", check=False)
    assert res.returncode == 1
    assert res.stdout.startswith(f"Incorrect Usage. flag provided but not defined: -frobnicate\n\nNAME:\n   "
                                 f"{runtime.program} - ")
    assert 'level=error msg="flag provided but not defined: -frobnicate"' in res.stderr

    res = runtime("create", "--frobnicate", "x", check=False, global_args=log)
    assert res.returncode == 1
    assert res.stdout.startswith(f"Incorrect Usage: flag provided but not defined: -frobnicate\n\nNAME:\n   "
                                 f"{runtime.program} create - ")
    assert one_error(res) == "flag provided but not defined: -frobnicate"

    res = runtime("create", "--preserve-fds", "many", "x", check=False, global_args=log)
    assert res.returncode == 1 and res.stdout.startswith("Incorrect Usage: ")
    assert one_error(res) == 'invalid value "many" for flag -preserve-fds: parse error'

    for args, check in ((["state", "a", "b"], 'requires exactly 1 argument(s)'),
                        (["kill"], 'requires a minimum of 1 argument(s)'),
                        (["kill", "a", "KILL", "x"], 'requires a maximum of 2 argument(s)'),
                        (["list", "x"], 'requires exactly 0 argument(s)')):
        res = runtime(*args, check=False, global_args=log)
        assert res.returncode == 1
        assert res.stdout.startswith(f"Incorrect Usage.\n\nNAME:\n   {runtime.program} {args[0]} - ")
        msg = one_error(res)
        assert msg.endswith(f': "{args[0]}" {check}') and msg.split(":")[0].endswith(runtime.program), msg


# --- list --format json ------------------------------------------------------------

def test_list_json_is_runcs(runtime, bundle):
    """One compact line, runc's keys in runc's order, `null` for no containers.
    pyrun printed json.dumps' spaced layout."""
    res = runtime("list", "--format", "json")
    assert res.stdout == "null\n"
    bundle.config["annotations"] = {"org.example.key": "value"}
    runtime.prepare(bundle).set_args("sleep", "300")
    cid = runtime.new_id()
    runtime("create", "-b", str(bundle.path), cid)
    out = runtime("list", "-f", "json").stdout
    listed = json.loads(out)
    assert out == json.dumps(listed, separators=(",", ":")) + "\n"
    assert [list(c) for c in listed] == [["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                                         "annotations", "owner"]]
    assert (listed[0]["id"], listed[0]["status"], listed[0]["annotations"]) == \
        (cid, "created", {"org.example.key": "value"})
    res = runtime("list", "--format", "yaml", check=False, global_args=("--log-format", "json"))
    assert (res.returncode, one_error(res)) == (1, "invalid format option")
    runtime("delete", "--force", cid)


# --- spec ----------------------------------------------------------------------------

def _pure_cgroup_v2() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == "/sys/fs/cgroup" and line.split(" - ")[1].startswith("cgroup2 ")
                   for line in f)


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_spec_namespaces_are_runcs(runtime, tmp_path, rootless):
    """runc's template has a cgroup namespace only on a pure cgroup v2 host
    (this test host is hybrid: none). pyrun's always had one."""
    (tmp_path / "out").mkdir()
    runtime("spec", "-b", str(tmp_path / "out"), *(["--rootless"] if rootless else []))
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    types = [ns["type"] for ns in config["linux"]["namespaces"]]
    base = ["pid", "ipc", "uts", "mount"] if rootless else ["pid", "network", "ipc", "uts", "mount"]
    assert types == base + (["cgroup"] if _pure_cgroup_v2() else []) + (["user"] if rootless else [])


# --- --log and --debug ---------------------------------------------------------------

def test_log_file_is_created_even_on_success(runtime, tmp_path):
    log = tmp_path / "runtime.log"
    res = runtime("list", global_args=("--log", str(log)))
    assert res.stderr == ""
    assert log.read_text() == ""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_debug_lines_go_to_the_log_only(runtime, bundle, tmp_path, fmt):
    """--debug: level=debug entries in the --log file, in the --log-format;
    nothing on stdout or stderr. pyrun wrote none."""
    log = tmp_path / "runtime.log"
    runtime.prepare(bundle).set_args("true")
    res = runtime("run", "-b", str(bundle.path), runtime.new_id(),
                  global_args=("--debug", "--log", str(log), "--log-format", fmt))
    assert (res.stdout, res.stderr) == ("", "")
    lines = log.read_text().splitlines()
    assert len(lines) > 3
    if fmt == "json":
        entries = [json.loads(line) for line in lines]
        assert {e["level"] for e in entries} == {"debug"}
        assert all({"level", "msg", "time"} <= set(e) for e in entries)
        messages = [e["msg"] for e in entries]
    else:
        pattern = re.compile(r'time="[0-9T:-]+Z" level=debug msg="((?:[^"\\]|\\.)*)"')
        assert all(pattern.match(line) for line in lines), lines
        messages = [pattern.match(line).group(1) for line in lines]
    if runtime.name == "pyrun":
        ready = next(m for m in messages if " ready after its steps: " in m)
        steps = ready.split(" ready after its steps: ")[1].split(", ")
        for step in ("prepare rootfs", "switch root", "switch user", "report ready"):
            assert step in steps
        assert any(m.startswith("start ") and m.endswith(" released") for m in messages)


RUNC_DEBUG_LINES = {"run": ["=> nsexec container setup", "child process in init()",
                            "init: closing the pipe to signal completion"],
                    "exec": ["=> nsexec container setup", "child process in init()", "setns_init: about to exec"]}


def test_debug_names_the_set_up_points_in_runcs_words(runtime, bundle, tmp_path):
    """runc's debug.bats and exec.bats grep --debug output for runc's lines
    at the namespace set-up, the start of the init and its ready/exec point;
    pyrun logs them, in that order, where its stages reach the same points.
    Seen failing: pyrun's --debug log had none of them."""
    runtime.prepare(bundle).set_args("sleep", "300")
    cid = runtime.new_id()
    logs = {}
    for command, args in (("run", ("run", "-d", "-b", str(bundle.path), cid)), ("exec", ("exec", cid, "true"))):
        log = tmp_path / f"{command}.log"
        res = runtime(*args, global_args=("--debug", "--log", str(log), "--log-format", "json"))
        assert (res.stdout, res.stderr) == ("", "")
        messages = [json.loads(line)["msg"] for line in log.read_text().splitlines()]
        # runc prefixes its nsexec lines ("nsexec[PID]: => nsexec container setup")
        found = [line for m in messages for line in RUNC_DEBUG_LINES[command] if m.endswith(line)]
        logs[command] = list(dict.fromkeys(found))     # first sighting of each, in order
    runtime("delete", "--force", cid)
    assert logs == RUNC_DEBUG_LINES


def test_debug_lines_cost_nothing_without_debug(runtime, bundle, tmp_path):
    """Without --debug the same run writes nothing to the log."""
    log = tmp_path / "runtime.log"
    runtime.prepare(bundle).set_args("true")
    runtime("run", "-b", str(bundle.path), runtime.new_id(), global_args=("--log", str(log)))
    assert log.read_text() == ""


def test_installed_as_runc_it_calls_itself_runc(pyrun, bundle, tmp_path):
    """A drop-in is installed under runc's name (a symlink named runc): help,
    --version and the create/run error prefix then say runc, as runc's
    help.bats and version.bats and callers parsing `runc version X` expect.
    Seen failing: pyrun called itself pyrun whatever it was run as."""
    (tmp_path / "bin").mkdir()
    runc = tmp_path / "bin" / "runc"
    runc.symlink_to(PYRUN)
    pyrun.command = [str(runc)]
    lines = pyrun("-h").stdout.splitlines()
    assert lines[:2] == ["NAME:", "   runc - Open Container Initiative runtime, written in Python"]
    assert pyrun("--version").stdout.splitlines()[0] == f"runc version {pyrun_version()}"
    assert pyrun("delete", "-h").stdout.splitlines()[:2] == ["NAME:", "   runc delete - delete a container and everything it holds"]
    bundle.set_args("/nonexistent")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1
    assert json.loads(res.stderr)["msg"].startswith("runc run failed: unable to start container process: "), res.stderr
    pyrun.command = [str(PYRUN)]        # as the pyrun fixture's own name
    assert pyrun("-h").stdout.splitlines()[1] == "   pyrun - Open Container Initiative runtime, written in Python"


def pyrun_version() -> str:
    import pyrun as package
    return package.__version__


def test_version_and_help_import_nothing_heavy(pyrun, tmp_path):
    """--version and the help screens stay as cheap as `state` (tests/test_imports.py's list)."""
    from test_imports import heavy_in, imports_of
    for args in (["--version"], ["--help"], ["help", "create"], ["exec", "--help"], ["kill", "-h"]):
        modules = imports_of(tmp_path, pyrun.root, *args)
        assert heavy_in(modules) == [], args
        assert "json" not in modules and "re" not in modules, args
