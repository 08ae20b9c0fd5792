"""Security issue #15, items 6 and 8.

6. `exec --cgroup` must keep the process at or below the container's own
   cgroup: `..` would put it outside the container's limits, and a crafted
   value made pyrun write a `cgroup.procs` outside cgroupfs.
8. Container files read by the runtime (the HOME lookup in /etc/passwd) must
   neither hang it (a FIFO) nor exhaust it (/dev/zero, a huge file) before any
   limit is set, nor lead it to a host file; and no stage may outlive a killed
   `pyrun create`/`exec` (PR_SET_PDEATHSIG on every stage).

Each test's docstring says how it was seen to fail with the protection removed.
"""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import PYRUN
from waiting import eventually

# pyrun's own address space is ~60 MB; the init is a fork of it.  Under this
# bound, an unbounded read of a container file fails where it would otherwise
# take the host's memory.
AS_LIMIT = 512 << 20


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _cgroup_paths(pyrun, cid: str) -> dict[str, str]:
    return json.loads((pyrun.root / cid / "state.json").read_text())["cgroup_paths"]


def _pids_in(paths: dict[str, str]) -> set[int]:
    found: set[int] = set()
    for path in paths.values():
        found.update(int(p) for p in Path(path, "cgroup.procs").read_text().split())
    return found


@pytest.fixture
def running(pyrun, bundle):
    """A running busybox container with HOME unset (the default config sets none)."""
    assert not any(e.startswith("HOME=") for e in bundle.config["process"]["env"])
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    yield cid
    pyrun("delete", "-f", cid)


# --- item 6: exec --cgroup ------------------------------------------------------

def _refused(pyrun, cid: str, bundle, value: str, message: str) -> None:
    """exec --cgroup VALUE fails with runc's words and exit code, before any process runs."""
    before = _pids_in(_cgroup_paths(pyrun, cid))
    res = pyrun("exec", "--cgroup", value, cid, "touch", "/ran", check=False)
    assert res.returncode == 255, res
    assert res.stderr.count("\n") == 1 and res.stderr.rstrip().endswith(
        f'msg="exec failed: {message}"'), res.stderr
    assert not (bundle.rootfs / "ran").exists()
    assert _pids_in(_cgroup_paths(pyrun, cid)) == before


@pytest.mark.parametrize("value", ["..", "../../..", "/../..", "cpu:../..", "memory:..", "cpu,cpuacct:../x",
                                   "sub/../../..", "/sub/../../../.."])
def test_exec_cgroup_outside_the_container_is_refused(pyrun, running, bundle, value):
    """`exec --cgroup ..` and friends: runc 1.4.3's "bad sub cgroup path: <path>"
    followed by runc 1.1-1.3's "<path> is not a sub cgroup path", so the
    exec.bats "runc exec --cgroup sub-cgroups [v1]" of both (v1.4.3 and v1.1.5) holds.

    Without the check (container/exec_.py _cgroup) `/../..` and `cpu:../..`
    ran the process in the host's cgroups, outside the container's limits
    (exit 0), and `..` failed only later, with a write error."""
    path = value.partition(":")[2] if ":" in value else value
    _refused(pyrun, running, bundle, value,
             f"unable to start container process: bad sub cgroup path: {path} is not a sub cgroup path")


def test_exec_cgroup_cannot_write_cgroup_procs_outside_cgroupfs(pyrun, running, bundle, tmp_path):
    """A crafted value that walks from the container's cpu cgroup to a host
    directory: pyrun used to create <that directory>/cgroup.procs (open "w")
    with the process's pid in it.  Seen with the check removed: the file
    appeared and the exec ran."""
    cpu = _cgroup_paths(pyrun, running)["cpu"]
    target = tmp_path / "victim"
    target.mkdir()
    value = "cpu:" + os.path.relpath(target, cpu)
    _refused(pyrun, running, bundle, value,
             f"unable to start container process: bad sub cgroup path: {value[4:]} is not a sub cgroup path")
    assert list(target.iterdir()) == []


def test_exec_cgroup_sibling_with_the_same_prefix_is_refused(pyrun, running, bundle):
    """`../<id>x` names a sibling cgroup whose path starts with the container's:
    runc 1.1.5 and 1.4.3 compare strings without a separator and run the
    process there (measured).  pyrun requires <container cgroup>/.  Seen with
    the check removed: the process ran in the sibling."""
    paths = _cgroup_paths(pyrun, running)
    sibling = {key: path + "x" for key, path in paths.items()}
    for path in sibling.values():
        os.mkdir(path)
    try:
        _refused(pyrun, running, bundle, f"../{running}x",
                 f"unable to start container process: bad sub cgroup path: ../{running}x is not a sub cgroup path")
    finally:
        for path in sibling.values():
            os.rmdir(path)


def test_exec_cgroup_unknown_controller_is_refused(pyrun, running, bundle):
    """`whaaat:/` was accepted and ran the process (seen with the check removed)."""
    _refused(pyrun, running, bundle, "whaaat:/",
             "unable to start container process: unknown controller whaaat in SubCgroupPaths")


@pytest.mark.parametrize("value", ["nonexistent", "cpu:nonexistent"])
def test_exec_cgroup_that_does_not_exist_fails_in_runcs_words(pyrun, running, bundle, value):
    """A sub-cgroup nobody made: runc's "error adding pid N to cgroups: failed
    to write N: open <dir>/nonexistent/cgroup.procs: no such file or
    directory" (its exec.bats greps it), exit 255, nothing runs, nothing is
    created.  Seen failing: pyrun said "join cgroup: no such file or directory: <path>"."""
    paths = _cgroup_paths(pyrun, running)
    # the first hierarchy joined is the one named: cpu alone for "cpu:", any of them otherwise
    targets = {f"{p}/nonexistent/cgroup.procs" for k, p in paths.items()
               if value == "nonexistent" or "cpu" in k.split(",")}
    before = _pids_in(paths)
    res = pyrun("exec", "--cgroup", value, running, "touch", "/ran", check=False)
    assert res.returncode == 255, res
    msg = res.stderr.rstrip()
    m = re.fullmatch(r'time="[^"]+" level=error msg="exec failed: unable to start container process: '
                     r'error during container init: error adding pid (\d+) to cgroups: '
                     r'failed to write (\d+): open (\S+): no such file or directory \(step: join cgroup\)"', msg)
    assert m and m.group(1) == m.group(2) and m.group(3) in targets, msg
    assert not (bundle.rootfs / "ran").exists()
    assert not any(os.path.exists(os.path.join(p, "nonexistent")) for p in paths.values())
    assert _pids_in(_cgroup_paths(pyrun, running)) == before


@pytest.mark.parametrize("values,message", [
    ([":x"], "invalid --cgroup argument: :x (empty <controller> prefix)"),
    (["cpu:a", "cpu:b"], "invalid --cgroup argument(s): controller cpu specified multiple times"),
    (["a", "b"], "invalid --cgroup argument: a (missing <controller>: prefix)"),
    (["cpu:x", "b"], "invalid --cgroup argument: b (missing <controller>: prefix)"),
    (["b", "cpu:x"], "invalid --cgroup argument: b (missing <controller>: prefix)"),
])
def test_exec_cgroup_malformed_arguments(pyrun, running, bundle, values, message):
    """runc 1.4.3's argument checks and words, measured (1.1.5 took `:x` as a
    path for every controller).  Seen with the parser removed: `:x` failed
    later, after a stage had been forked; a path mixed with `cpu:x` used to
    be taken for every controller, the cpu one dropped."""
    before = _pids_in(_cgroup_paths(pyrun, running))
    args = [a for v in values for a in ("--cgroup", v)]
    res = pyrun("exec", *args, running, "touch", "/ran", check=False)
    assert res.returncode == 255, res
    assert res.stderr.rstrip().endswith(f'msg="exec failed: {message}"'), res.stderr
    assert not (bundle.rootfs / "ran").exists()
    assert _pids_in(_cgroup_paths(pyrun, running)) == before


def test_exec_cgroup_absolute_path_is_below_the_container(pyrun, running, bundle):
    """An absolute value is taken from the container's cgroup, never the
    host's root (runc: path.Join(base, value)): /sys/fs/cgroup/cpu names a
    missing sub-cgroup, and nothing runs."""
    paths = _cgroup_paths(pyrun, running)
    before = _pids_in(paths)
    res = pyrun("exec", "--cgroup", "/sys/fs/cgroup/cpu", running, "touch", "/ran", check=False)
    assert res.returncode == 255, res       # every exec failure, as runc's
    first = next(iter(paths.values()))     # the init joins the cgroups in the state's order
    assert res.stderr.count("\n") == 1 and res.stderr.rstrip().endswith(
        f'to cgroups: failed to write {res.stderr.split("error adding pid ")[1].split()[0]}: '
        f'open {first}/sys/fs/cgroup/cpu/cgroup.procs: no such file or directory (step: join cgroup)"'), res.stderr
    assert not (bundle.rootfs / "ran").exists()
    assert _pids_in(paths) == before


def test_cgroupfs_refuses_symlinks(pyrun, running):
    """Why no test plants a symlink inside the container's cgroup pointing
    out: cgroupfs (kernfs) refuses symlink(2), v1 and v2 alike, so the
    lexical check on the normalised path is the whole check."""
    for path in _cgroup_paths(pyrun, running).values():
        with pytest.raises(PermissionError):
            os.symlink("/tmp", os.path.join(path, "out"))


def _exec_pid_cgroups(pyrun, cid: str, tmp_path: Path, *cgroup_args: str) -> dict[str, str]:
    """Run `sleep` with the --cgroup arguments; its /proc/<pid>/cgroup as seen from the host."""
    pid_file = tmp_path / "exec.pid"
    args = [a for v in cgroup_args for a in ("--cgroup", v)]
    pyrun("exec", "-d", "--pid-file", str(pid_file), *args, cid, "sleep", "60")
    pid = int(pid_file.read_text())
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    finally:
        os.kill(pid, signal.SIGKILL)
        pid_file.unlink()
    return {line.split(":", 2)[1]: line.split(":", 2)[2] for line in lines}


def test_exec_cgroup_valid_sub_cgroups_still_work(pyrun, running, tmp_path):
    """`sub`, `/sub` and `cpu:sub` land in <container cgroup>/sub, as seen in
    /proc/<pid>/cgroup on the host; `/` in the container's own cgroup."""
    paths = _cgroup_paths(pyrun, running)
    for key, path in paths.items():
        os.mkdir(os.path.join(path, "sub"))
        if "cpuset" in key.split(","):      # a fresh v1 cpuset holds no task until given cpus and mems
            for name in ("cpuset.cpus", "cpuset.mems"):
                Path(path, "sub", name).write_text(Path(path, name).read_text())
    own = _exec_pid_cgroups(pyrun, running, tmp_path)
    assert set(own) == set(paths)
    assert _exec_pid_cgroups(pyrun, running, tmp_path, "/") == own
    for value in ("sub", "/sub", "sub/"):
        assert _exec_pid_cgroups(pyrun, running, tmp_path, value) == {k: v + "/sub" for k, v in own.items()}
    only_cpu = _exec_pid_cgroups(pyrun, running, tmp_path, "cpu:sub")
    assert only_cpu == {k: v + "/sub" if k == "cpu" else v for k, v in own.items()}


# --- item 8: container files that hang or exhaust the runtime -----------------

def _passwd_variants(tmp_path: Path) -> dict[str, object]:
    host_passwd = tmp_path / "host-passwd"
    host_passwd.write_text("root:x:0:0:root:/HOST-LEAK:/bin/sh\n")
    return {
        "fifo": lambda p: os.mkfifo(p),
        "dev-zero": lambda p: os.symlink("/dev/zero", p),
        "huge-file": lambda p: open(p, "w").close() or os.truncate(p, 8 << 30),    # sparse
        "directory": lambda p: os.mkdir(p),
        "proc-self-fd-0": lambda p: os.symlink("/proc/self/fd/0", p),
        "proc-self-exe": lambda p: os.symlink("/proc/self/exe", p),
        "absolute-host-path": lambda p: os.symlink(str(host_passwd), p),
    }


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge-file", "directory", "proc-self-fd-0",
                                  "proc-self-exe", "absolute-host-path"])
def test_hostile_etc_passwd_neither_hangs_nor_exhausts_create(pyrun, bundle, tmp_path, kind):
    """An image whose /etc/passwd is hostile, HOME unset: `run` must finish
    promptly under a 512 MiB address-space limit and give HOME=/ (current
    runc's fallback), reading no host file.

    Seen with the protection removed (the old open("/etc/passwd") loop):
    fifo hung create past the timeout and its init outlived the killed
    command; dev-zero failed "prepare environment: cannot allocate memory"
    (without the limit it took the host's memory); proc-self-fd-0 read the
    host file given as stdin (HOME=/HOST-LEAK).
    runc 1.1.5: fifo hangs, init orphaned; dev-zero/huge/exe fail "unable to
    find user 0: bufio.Scanner: token too long".  runc 1.4.3: fifo hangs,
    the others give HOME=/."""
    passwd = bundle.rootfs / "etc" / "passwd"
    passwd.unlink()
    _passwd_variants(tmp_path)[kind](str(passwd))
    if kind == "huge-file":
        assert passwd.stat().st_size == 8 << 30
    bundle.set_args("sh", "-c", 'echo "HOME=$HOME"')
    stdin = tmp_path / "host-passwd"
    with open(stdin) as f:
        res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), timeout=20, stdin=f,
                    preexec_fn=_bounded, check=False)
    assert (res.returncode, res.stdout, res.stderr) == (0, "HOME=/\n", "")


def test_passwd_home_of_a_regular_file_is_still_found(pyrun, bundle):
    """The bounded read still finds the user's home in an ordinary file,
    for a non-root uid too."""
    (bundle.rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n" + "".join(f"u{i}:x:{i}:{i}::/home/u{i}:/bin/sh\n" for i in range(1, 5000)))
    bundle.config["process"]["user"] = {"uid": 4321, "gid": 4321}
    bundle.set_args("sh", "-c", 'echo "HOME=$HOME"')
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), preexec_fn=_bounded)
    assert res.stdout == "HOME=/home/u4321\n"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_hostile_etc_group_is_never_read(pyrun, bundle, kind):
    """additionalGids are numeric (process.user), so /etc/group is never read:
    a FIFO or /dev/zero there changes nothing.  runc 1.1.5 reads it always
    (measured: a FIFO hangs create with its init orphaned; /dev/zero grows
    the orphaned init past 2 GB); runc 1.4.3 does not read it either."""
    group = bundle.rootfs / "etc" / "group"
    group.unlink()
    os.mkfifo(group) if kind == "fifo" else os.symlink("/dev/zero", group)
    bundle.config["process"]["user"]["additionalGids"] = [5, 1234]
    bundle.set_args("grep", "^Groups:", "/proc/self/status")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), timeout=20, preexec_fn=_bounded)
    assert res.stdout.split() == ["Groups:", "5", "1234"]


@pytest.mark.parametrize("user", [None, "1000"])
def test_exec_survives_a_passwd_fifo_made_by_the_container(pyrun, running, bundle, user):
    """The running container (root inside, no capability needed) replaces
    /etc/passwd by a FIFO; `pyrun exec` (HOME unset) must not hang.
    Seen with the protection removed: exec hung past the timeout, and its
    stage-2 process, blocked in open(), outlived the killed command."""
    pyrun("exec", running, "sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd")
    assert (bundle.rootfs / "etc" / "passwd").is_fifo()
    args = ("--user", user) if user else ()
    res = pyrun("exec", *args, running, "sh", "-c", 'echo "HOME=$HOME"', timeout=20, preexec_fn=_bounded)
    assert res.stdout == "HOME=/\n"


# --- item 8: no stage outlives a killed command ------------------------------

def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _kill_command_and_check_stages(pyrun, cid: str, cmd: subprocess.Popen, blocked) -> None:
    """Wait until `blocked()` gives the stage pids, SIGKILL the command,
    and require every one of them to die; clean up whatever did not."""
    stages: set[int] = set()
    try:
        stages.update(eventually(blocked, timeout=20, what="a stage of the command blocked"))
        cmd.kill()
        cmd.wait()
        eventually(lambda: not {p for p in stages if _alive(p)}, timeout=5,
                   what=f"every stage {sorted(stages)} dead after the command was killed")
    finally:
        for p in stages:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if cmd.poll() is None:
            cmd.kill()
            cmd.wait()
        pyrun("delete", "--force", cid, check=False)


def test_killed_create_leaves_no_init_blocked_in_a_create_container_hook(pyrun, bundle, tmp_path):
    """The init runs createContainer hooks itself; one that blocks holds the
    init.  SIGKILL `pyrun create` then: the init (armed against its parent,
    the command, once stage 1 is reaped) and with it the hook must die.
    Seen with the arming step removed: the init and the hook lived on."""
    started = tmp_path / "hook-started"
    bundle.config["hooks"] = {"createContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"touch {started}; exec sleep 600"]}]}
    bundle.write()
    cid = pyrun.new_id()
    cmd = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "create", "-b", str(bundle.path), cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_command_and_check_stages(
        pyrun, cid, cmd, lambda: _descendants(cmd.pid) if started.exists() else set())


def test_killed_create_leaves_no_stage_one_blocked_on_a_namespace_path(pyrun, bundle, tmp_path):
    """Stage 1 opens the namespace paths of the config; a FIFO there blocks
    it in open() (runc blocks likewise).  SIGKILL `pyrun create`: stage 1,
    armed from its fork, must die.  Seen with that arming removed: stage 1
    stayed blocked for ever."""
    fifo = tmp_path / "ipc-ns"
    os.mkfifo(fifo)
    ns = bundle.config["linux"]["namespaces"]
    bundle.config["linux"]["namespaces"] = [n for n in ns if n["type"] != "ipc"] + [{"type": "ipc", "path": str(fifo)}]
    bundle.write()
    cid = pyrun.new_id()
    cmd = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "create", "-b", str(bundle.path), cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def blocked_in_open() -> set[int]:
        found = set()
        for p in _descendants(cmd.pid):
            try:
                if Path(f"/proc/{p}/syscall").read_text().split()[0] == "257":     # openat
                    found.add(p)
            except (OSError, IndexError):
                pass
        return found

    _kill_command_and_check_stages(pyrun, cid, cmd, blocked_in_open)
