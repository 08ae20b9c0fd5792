"""The init's last steps: closing fds where close_range is refused, and
failures after `pyrun create` has gone, which must still reach the caller.

Every test runs a real container and asserts what the container or the
caller (stderr, --log, exit status, state) sees.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import PYRUN, Bundle
from test_cli_fidelity import Runtime, runc_143  # noqa: F401 (runc_143 is a fixture)

EPERM = 1


def deny(bundle: Bundle, *names: str, nnp: bool = False) -> None:
    """A profile that allows everything but `names` (EPERM)."""
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": list(names), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}]}
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.write()


def json_errors(log: Path) -> list[str]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e["msg"] for e in entries if e["level"] == "error"]


# --- a profile without close_range --------------------------------------------------

@pytest.mark.parametrize("denied", [("close_range",), ("close_range", "openat2")])
@pytest.mark.parametrize("nnp", [False, True])
def test_profile_without_close_range_runs_the_program(pyrun, bundle, denied, nnp):
    """Before: every such container died silently (`run` exited 1 with no
    message), the init's close_range before execve being refused."""
    deny(bundle, *denied, nnp=nnp)
    bundle.set_args("sh", "-c", "echo ran; ls /proc/self/fd")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    # ls's own directory fd is 3: nothing of the runtime's crossed into the container.
    assert res.stdout.split() == ["ran", "0", "1", "2", "3"], res
    assert res.stderr == ""


def test_profile_without_close_range_through_create_and_start(pyrun, bundle):
    """Before: create and start both exited 0 and the container was just `stopped`."""
    deny(bundle, "close_range")
    bundle.set_args("sh", "-c", "echo ran > /ran")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    pyrun("start", cid)
    pyrun.wait_status(cid, "stopped")
    assert (bundle.rootfs / "ran").read_text() == "ran\n"
    pyrun("delete", cid)


def test_fd_by_fd_when_pyrun_itself_may_not_close_range(pyrun, bundle, tmp_path):
    """pyrun run under a filter that refuses close_range (as in an outer
    container with an older profile): the init marks its fds close-on-exec
    one by one, and the container gets only its stdio. Seen failing with the
    fallback removed: `mark fds close-on-exec: close_range: operation not permitted`."""
    wrapper = tmp_path / "under-filter.py"
    wrapper.write_text(
        "import errno, os, sys, pyseccomp as sc\n"
        "f = sc.SyscallFilter(sc.ALLOW)\n"
        "f.add_rule(sc.ERRNO(errno.EPERM), 'close_range')\n"
        "f.load()\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n")
    bundle.set_args("ls", "/proc/self/fd")
    cid = pyrun.new_id()
    pyrun.command = [sys.executable, str(wrapper), str(PYRUN)]
    res = pyrun("run", "-b", str(bundle.path), cid)
    assert res.stdout.split() == ["0", "1", "2", "3"], res


# --- failures after `create` has gone ----------------------------------------------

@pytest.fixture(params=["pyrun", "runc-1.4.3"])
def runtime(request, pyrun, tmp_path: Path):
    """pyrun, and runc 1.4.3 beside it: where execve fails, the expectation is
    current runc's (runc 1.2+ changed it, runc#4171)."""
    if request.param == "pyrun":
        rt = Runtime("pyrun", str(PYRUN), pyrun.root)
    else:
        rt = Runtime("runc-1.4.3", request.getfixturevalue("runc_143"), tmp_path / "runc-root")
        rt.root.mkdir(mode=0o700)
    yield rt
    rt.cleanup()


def spawn(runtime: Runtime, tmp_path: Path, *args: str) -> tuple[int, Path, Path]:
    """`runtime args` with its stdout and stderr in files that stay readable
    after it exits: a created or detached container keeps them as its stdio."""
    name = uuid.uuid4().hex[:8]
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("w") as o, err.open("w") as e:
        rc = subprocess.run([runtime.binary, "--root", str(runtime.root), *args], stdin=subprocess.DEVNULL,
                            stdout=o, stderr=e, timeout=60).returncode
    return rc, out, err


def missing_interpreter(bundle: Bundle) -> None:
    """runc v1.3.6's run.bats "runc run [execve error]": /run.sh's `#!` names no file."""
    (bundle.rootfs / "run.sh").write_text("#!/mmnnttbb foo bar\nsh\n")
    (bundle.rootfs / "run.sh").chmod(0o755)
    bundle.set_args("/run.sh")


def test_missing_interpreter_is_one_line_on_the_process_stderr(runtime, bundle, tmp_path):
    """execve of a script whose `#!` interpreter does not exist fails after
    the caller was told the process started. Current runc: exactly one line,
    `exec /run.sh: no such file or directory`, written by the init on its
    own stderr (the caller's for a foreground `run`), exit status 255, and
    nothing in --log. Before: pyrun's `run` logged "run failed: ...
    error during container init: exec: ..." at level error and exited 1."""
    missing_interpreter(bundle)
    log = tmp_path / "log.json"
    rc, out, err = spawn(runtime, tmp_path, "--log", str(log), "--log-format", "json",
                         "run", "-b", str(bundle.path), runtime.new_id())
    assert (rc, out.read_text(), err.read_text()) == (255, "", "exec /run.sh: no such file or directory\n")
    assert json_errors(log) == []


@pytest.mark.parametrize("how", ["run -d", "create, start"])
def test_missing_interpreter_detached_or_created(runtime, bundle, tmp_path, how):
    """The same failure in a detached or a created container: `run -d` and
    `start` exit 0 and say nothing (the process did start), the container
    is stopped, and the line is on the container's stderr: the stdio that
    `run -d` or `create` was given (a shim's log), where runc 1.4.3 puts it."""
    missing_interpreter(bundle)
    cid = runtime.new_id()
    if how == "run -d":
        rc, out, container_err = spawn(runtime, tmp_path, "run", "-d", "-b", str(bundle.path), cid)
        assert (rc, out.read_text()) == (0, "")
    else:
        rc, out, container_err = spawn(runtime, tmp_path, "create", "-b", str(bundle.path), cid)
        assert (rc, out.read_text(), container_err.read_text()) == (0, "", "")
        rc, out, err = spawn(runtime, tmp_path, "start", cid)
        assert (rc, out.read_text(), err.read_text()) == (0, "", "")
    runtime.wait_status(cid, "stopped")
    assert container_err.read_text() == "exec /run.sh: no such file or directory\n"
    runtime("delete", cid)


def test_executable_removed_before_start(runtime, bundle, tmp_path):
    """process.args[0] exists at create (looked up then) and is gone at
    start: execve fails after the init was released. runc 1.4.3: `start`
    exits 0, the init says why on the container's stderr (create's) and
    exits 255; it is stopped. Before (pyrun, as runc 1.1): `start` exited 1
    with "error during container init: exec: exec /victim: ..."."""
    shutil.copy(bundle.rootfs / "bin" / "busybox", bundle.rootfs / "victim")
    bundle.set_args("/victim", "true")
    cid = runtime.new_id()
    create_err = tmp_path / "create.err"
    with create_err.open("w") as e:
        subprocess.run([runtime.binary, "--root", str(runtime.root), "create", "-b", str(bundle.path), cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=e, check=True, timeout=60)
    (bundle.rootfs / "victim").unlink()
    log = tmp_path / "log.json"
    res = runtime("start", cid, global_args=("--log", str(log), "--log-format", "json"))
    assert (res.stdout, res.stderr) == ("", "")
    runtime.wait_status(cid, "stopped")
    assert create_err.read_text() == "exec /victim: no such file or directory\n"
    assert json_errors(log) == []
    runtime("delete", cid)


def test_execve_refused_by_seccomp_after_start(runtime, bundle, tmp_path):
    """A profile (loaded late, with noNewPrivileges) that refuses execve: the
    last step fails after `start` released the init; `run` exits with the
    process's 255 and the one line on its stderr, nothing in --log."""
    deny(bundle, "execve", "execveat", nnp=True)
    log = tmp_path / "log.json"
    bundle.set_args("true")
    cid = runtime.new_id()
    res = runtime("run", "-b", str(bundle.path), cid, check=False,
                  global_args=("--log", str(log), "--log-format", "json"))
    assert (res.returncode, res.stdout, res.stderr) == (255, "", "exec /bin/true: operation not permitted\n")
    assert json_errors(log) == []
    assert not (runtime.root / cid).exists()


def test_exec_fifo_reopen_refused_reaches_run_stderr(pyrun, bundle):
    """A profile (loaded late) that refuses openat: the init cannot reopen
    exec.fifo for writing, so `start` never hears from it; the init says
    why on its stderr (current runc's last resort), and `run` that it died."""
    deny(bundle, "openat", nnp=True)
    bundle.set_args("true")
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid, check=False)
    assert res.returncode == 1, res
    # The init's own line first (it dies before `start` can look), then
    # run's: whether start finds it dead before or while reading the fifo
    # is a race, so that line is only checked to be run's error.
    init_line, run_line = res.stderr.splitlines()
    assert re.fullmatch(r"unable to start container process: error during container init: "
                        r"open exec fifo /proc/self/fd/\d+: operation not permitted \(step: wait for start\)",
                        init_line), res
    assert "run failed" in run_line and "level=error" in run_line, res


@pytest.mark.parametrize("detached", [False, True])
def test_exec_of_a_file_the_kernel_cannot_run(runtime, bundle, detached):
    """`exec` of an executable file the kernel refuses (ENOEXEC: no format it
    knows) fails after release. runc 1.4.3: the process's stderr (exec's)
    gets `exec /junk: exec format error`; `exec` exits with its 255, or 0
    with -d. Before: pyrun's `exec` logged "exec failed: ... exec: exec
    /junk: ..." at level error and exited 255 with -d too."""
    (bundle.rootfs / "junk").write_bytes(b"\x00\x01\x02 not a program\n")
    (bundle.rootfs / "junk").chmod(0o755)
    bundle.set_args("sleep", "60")
    cid = runtime.new_id()
    runtime("run", "-d", "-b", str(bundle.path), cid)
    res = runtime("exec", *(["-d"] if detached else []), cid, "/junk", check=False)
    assert (res.returncode, res.stdout, res.stderr) == (0 if detached else 255, "", "exec /junk: exec format error\n")
    runtime("delete", "--force", cid)


def test_program_on_a_noexec_mount_is_refused_by_create(runtime, bundle, tmp_path):
    """A program whose execve would fail with EACCES (its file is on a noexec
    mount, its mode bits say executable): runc 1.4.3's lookup asks
    access(X_OK) and `create` fails with one line, nothing is left. Before:
    pyrun looked at the mode bits only, `create` succeeded and `start` hit
    EACCES in execve."""
    nx = tmp_path / "nx"
    nx.mkdir()
    shutil.copy(bundle.rootfs / "bin" / "busybox", nx / "bb")
    (bundle.rootfs / "nx").mkdir()
    bundle.config["mounts"].append({"destination": "/nx", "type": "bind", "source": str(nx),
                                    "options": ["bind", "ro", "noexec"]})
    bundle.set_args("/nx/bb", "true")
    cid = runtime.new_id()
    res = runtime("create", "-b", str(bundle.path), cid, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1, res
    entries = [json.loads(line) for line in res.stderr.splitlines()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    assert entries[0]["msg"].startswith(f"{runtime.program} create failed: unable to start container process: ")
    assert entries[0]["msg"].endswith(runtime.init_error('exec: "/nx/bb": permission denied', "look up executable")), entries
    assert not (runtime.root / cid).exists()
