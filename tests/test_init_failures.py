"""The init's last steps: closing fds where close_range is refused, and
failures after `pyrun create` has gone, which must still reach the caller.

Every test runs a real container and asserts what the container or the
caller (stderr, --log, exit status, state) sees.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import PYRUN, Bundle

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

def test_executable_removed_before_start_is_reported_by_start(pyrun, bundle, tmp_path):
    """process.args[0] exists at create (looked up then) and is gone at start:
    execve fails after the init was released. Before: `start` exited 0 with
    nothing said and the container was just stopped."""
    shutil.copy(bundle.rootfs / "bin" / "busybox", bundle.rootfs / "victim")
    bundle.set_args("/victim", "true")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    (bundle.rootfs / "victim").unlink()
    log = tmp_path / "log.json"
    res = pyrun("start", cid, check=False, global_args=("--log", str(log), "--log-format", "json"))
    assert res.returncode == 1, res
    want = "error during container init: exec: exec /victim: no such file or directory"
    assert want in res.stderr
    errors = json_errors(log)
    assert len(errors) == 1 and want in errors[0], errors
    assert pyrun.state(cid)["status"] == "stopped"
    pyrun("delete", cid)


def test_execve_refused_after_start_fails_run(pyrun, bundle, tmp_path):
    """A profile (loaded late, with noNewPrivileges) that refuses execve: the
    last step fails after `start` released the init."""
    deny(bundle, "execve", "execveat", nnp=True)
    log = tmp_path / "log.json"
    bundle.set_args("true")
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid, check=False,
                global_args=("--log", str(log), "--log-format", "json"))
    assert res.returncode == 1, res
    want = "error during container init: exec: exec /bin/true: operation not permitted"
    errors = json_errors(log)
    assert len(errors) == 1 and want in errors[0], errors
    assert not (pyrun.root / cid).exists()


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
    assert "error during container init: wait for start: open exec fifo" in init_line, res
    assert "operation not permitted" in init_line, res
    assert "run failed" in run_line and "level=error" in run_line, res


def test_exec_of_a_file_the_kernel_cannot_run_reports_the_exec_step(pyrun, bundle):
    """`pyrun exec` of an executable file the kernel refuses (ENOEXEC: no
    format it knows) fails after release: the caller gets the step and
    reason and runc's 255. Before: the text went to the process's stderr
    only, with exit 126."""
    (bundle.rootfs / "junk").write_bytes(b"\x00\x01\x02 not a program\n")
    (bundle.rootfs / "junk").chmod(0o755)
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    res = pyrun("exec", cid, "/junk", check=False)
    assert res.returncode == 255, res
    assert "error during container init: exec: exec /junk: exec format error" in res.stderr
    pyrun("delete", "--force", cid)
