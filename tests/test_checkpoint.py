"""`checkpoint` and `restore` (CRIU), against pyrun and Debian's runc side by side.

Debian's CRIU 3.17 cannot dump anything on this host's 6.18 kernel (its kerndat
vDSO check fails, for runc as for pyrun), so here the tests check what is
decided before CRIU runs (flags, --parent-path, the container's status) and
the error CRIU's failure produces. The scenarios marked `criu` need a kernel
CRIU works on: tests/test_checkpoint_vm.py runs them in the qemu VM on
Debian 12's own kernel (tests/vm/), where they must all pass.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from conftest import Pyrun, proc_state
from waiting import eventually

IN_VM = bool(os.environ.get("PYRUN_IN_VM"))
RUNC = "/usr/sbin/runc"
COUNTER = "i=0; while :; do i=$((i+1)); echo $i >> {path}; sleep 0.2; done"
needs_criu_kernel = pytest.mark.skipif(
    not IN_VM, reason="CRIU 3.17 cannot dump on this kernel: tests/test_checkpoint_vm.py runs these in the VM")

pytestmark = pytest.mark.skipif(shutil.which("criu") is None, reason="criu is not installed (install.sh)")


@pytest.fixture(params=["pyrun", "runc"])
def rt(request, pyrun, tmp_path) -> Pyrun:
    """pyrun, or Debian's runc with its own --root (inside pyrun's leak check)."""
    if request.param == "pyrun":
        return pyrun
    if not os.path.exists(RUNC):
        pytest.skip(f"no runc at {RUNC}")
    runc = Pyrun(tmp_path / "runc-root")
    runc.command = [RUNC]
    request.addfinalizer(runc.cleanup)
    return runc


class Stdio:
    """Pipes for a container's stdio: CRIU can only hand pipes (and ptys)
    back to a restored process, never a file of the host's mounts."""

    def __init__(self) -> None:
        self.stdin_r, self.stdin_w = os.pipe()
        self.out_r, self.out_w = os.pipe()

    def kw(self) -> dict:
        return {"stdin": self.stdin_r, "stdout": self.out_w, "stderr": self.out_w}

    def close(self) -> None:
        for fd in (self.stdin_r, self.stdin_w, self.out_r, self.out_w):
            os.close(fd)


@pytest.fixture
def stdio():
    pipes = Stdio()
    yield pipes
    pipes.close()


def counter_bundle(bundle, path: str = "/count.log"):
    bundle.set_args("sh", "-c", COUNTER.format(path=path))
    return bundle


def counts(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def wait_counts(path: Path, more_than: int, timeout: float = 60) -> list[int]:
    return eventually(lambda: (c := counts(path)) and len(c) > more_than and c, timeout,
                      f"{path} longer than {more_than}")


def run_detached(rt: Pyrun, bundle, cid: str, stdio: Stdio, *extra: str) -> int:
    rt("run", "-d", "-b", str(bundle.path), *extra, cid, timeout=120, **stdio.kw())
    return rt.state(cid)["pid"]


def checkpoint(rt: Pyrun, cid: str, image: Path, *extra: str, check: bool = True):
    return rt("checkpoint", "--image-path", str(image), "--work-path", str(image.parent / "work"),
              *extra, cid, timeout=300, check=check)


def restore(rt: Pyrun, bundle, cid: str, image: Path, stdio: Stdio | None, *extra: str):
    """Detached, from `image`; stdio on pipes, or (None) on /dev/null."""
    kw = stdio.kw() if stdio else {"stdin": -3, "stdout": -3, "stderr": -3}      # DEVNULL
    return rt("restore", "-d", "--image-path", str(image), "--work-path", str(image.parent / "work"),
              "-b", str(bundle.path), *extra, cid, timeout=300, **kw)


def assert_gone(rt: Pyrun, cid: str, pid: int) -> None:
    """What runc's bats calls "checkpointed": the container no longer exists."""
    res = rt("state", cid, check=False)
    assert res.returncode == 1 and "does not exist" in res.stderr, res
    eventually(lambda: proc_state(pid) in ("gone", "Z"), 30, f"{pid} gone")


def assert_continues(log: Path, before: list[int]) -> list[int]:
    """The restored counter goes on from where the dump left it: the log is
    1, 2, ... without a gap or a restart, and longer than at the dump."""
    after = wait_counts(log, len(before) + 2)
    assert after == list(range(1, len(after) + 1)), after
    return after


def restored_state(rt: Pyrun, cid: str, pid_file: Path) -> dict:
    st = rt.state(cid)
    assert st["status"] == "running", st
    assert st["pid"] == int(pid_file.read_text()), (st, pid_file.read_text())
    assert proc_state(st["pid"]) not in ("gone", "Z")
    return st


def start_counter(rt: Pyrun, bundle, stdio: Stdio, log: Path) -> tuple[str, int]:
    """A counter container (its bundle made by counter_bundle), once it has
    counted past 3 into `log`: its id and pid."""
    cid = rt.new_id()
    pid = run_detached(rt, bundle, cid, stdio)
    wait_counts(log, 3)
    return cid, pid


def dump_and_restore(rt: Pyrun, bundle, cid: str, pid: int, stdio: Stdio, log: Path,
                     tmp_path: Path, *checkpoint_flags: str) -> dict:
    """Checkpoint the counter (after which it no longer exists), restore it
    under its id: its state, once the count goes on from where the dump left it."""
    image = tmp_path / "image"
    checkpoint(rt, cid, image, *checkpoint_flags)
    assert_gone(rt, cid, pid)
    before = counts(log)
    restore(rt, bundle, cid, image, stdio, "--pid-file", str(tmp_path / "pid"))
    st = restored_state(rt, cid, tmp_path / "pid")
    assert_continues(log, before)
    return st


# --- on any kernel: what is decided before CRIU runs -------------------------

@pytest.mark.parametrize("flags, message", [
    # runc 1.1.5: "Invalid manage cgroups mode"; pyrun has runc 1.4's wording
    (["--manage-cgroups-mode", "bogus"], "invalid manage-cgroups-mode value"),
    (["--empty-ns", "pid"], 'namespace "pid" is not supported'),
    (["--page-server", "no-port"], "Use --page-server ADDRESS:PORT to specify page server"),
    (["--page-server", "host:port"], "Invalid port number"),
    (["--parent-path", "/abs/parent"], "--parent-path must be relative"),
    (["--parent-path", "../missing"], "invalid --parent-path: stat "),
])
def test_bad_checkpoint_flags_are_refused_before_criu_runs(rt, bundle, stdio, tmp_path, flags, message):
    counter_bundle(bundle)
    cid = rt.new_id()
    pid = run_detached(rt, bundle, cid, stdio)
    image = tmp_path / "image"
    res = checkpoint(rt, cid, image, *flags, check=False)
    assert res.returncode == 1, res
    if rt.command == [RUNC] and flags[0] == "--manage-cgroups-mode":
        message = "Invalid manage cgroups mode"
    assert message.replace('"', '\\"') in res.stderr, res.stderr     # logfmt escapes quotes
    assert not (tmp_path / "work" / "dump.log").exists() and not (image / "dump.log").exists()
    st = rt.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    rt("delete", "-f", cid)


def test_missing_parent_is_named_as_runc_names_it(pyrun, bundle, stdio, tmp_path):
    """Go's filepath.Join cleans the path it reports: .../missing, not .../image/../missing."""
    counter_bundle(bundle)
    cid = pyrun.new_id()
    run_detached(pyrun, bundle, cid, stdio)
    res = checkpoint(pyrun, cid, tmp_path / "image", "--parent-path", "../missing", check=False)
    assert f"invalid --parent-path: stat {tmp_path}/missing: no such file or directory" in res.stderr, res.stderr
    pyrun("delete", "-f", cid)


def test_checkpoint_refuses_created_and_missing_containers(rt, bundle, tmp_path):
    cid = rt.new_id()
    rt("create", "-b", str(bundle.path), cid, stdin=-3, stdout=-3, stderr=-3)   # DEVNULL
    res = checkpoint(rt, cid, tmp_path / "image", check=False)
    assert res.returncode == 1 and "Container cannot be checkpointed in created state" in res.stderr, res
    assert rt.state(cid)["status"] == "created"
    rt("delete", "-f", cid)
    res = checkpoint(rt, cid, tmp_path / "image", check=False)
    assert res.returncode == 1 and "container does not exist" in res.stderr, res


def test_restore_without_a_checkpoint_leaves_nothing(pyrun, bundle, tmp_path):
    cid = pyrun.new_id()
    (tmp_path / "empty").mkdir()
    res = pyrun("restore", "-d", "--image-path", str(tmp_path / "empty"), "-b", str(bundle.path), cid,
                check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1, res
    entries = [json.loads(line) for line in res.stderr.splitlines()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    assert entries[0]["msg"].startswith(f"no checkpoint in {tmp_path}/empty: descriptors.json: "), entries
    assert not (pyrun.root / cid).exists()


def test_checkpoint_and_restore_help_list_runcs_flags(pyrun):
    for command, flags in (
            ("checkpoint", ["--image-path", "--work-path", "--parent-path", "--leave-running",
                            "--tcp-established", "--tcp-skip-in-flight", "--link-remap", "--ext-unix-sk", "--shell-job", "--lazy-pages",
                            "--status-fd", "--page-server", "--file-locks", "--pre-dump",
                            "--manage-cgroups-mode", "--empty-ns", "--auto-dedup"]),
            ("restore", ["--console-socket", "--image-path", "--work-path", "--tcp-established",
                         "--ext-unix-sk", "--shell-job", "--file-locks", "--manage-cgroups-mode",
                         "--bundle", "--detach", "--pid-file", "--no-subreaper", "--no-pivot",
                         "--empty-ns", "--auto-dedup", "--lazy-pages", "--lsm-profile", "--lsm-mount-context"])):
        text = pyrun(command, "-h").stdout
        assert text.startswith(f"NAME:\n   pyrun {command} - ")
        listed = [line.split()[0].rstrip(",") for line in text.split("OPTIONS:\n")[1].splitlines() if line.strip()]
        assert listed == flags


def test_restore_takes_single_dash_no_subreaper(pyrun, tmp_path):
    """runc's callers (containerd's shim) pass `-no-subreaper`: parsed, then the
    missing checkpoint is what fails."""
    res = pyrun("restore", "-no-subreaper", "-d", "--image-path", str(tmp_path), "x", check=False)
    assert res.returncode == 1 and "Incorrect Usage" not in res.stdout, res
    assert "no checkpoint in" in res.stderr or "config.json" in res.stderr, res.stderr


@pytest.mark.skipif(IN_VM, reason="on the host's kernel CRIU fails; in the VM it works")
def test_criu_failure_is_reported_with_its_log(rt, bundle, stdio, tmp_path):
    """CRIU 3.17 on 6.18: the dump fails in kerndat. pyrun's error names the
    request, CRIU's own last error line and its log; the container runs on."""
    counter_bundle(bundle)
    cid = rt.new_id()
    pid = run_detached(rt, bundle, cid, stdio)
    image = tmp_path / "image"
    res = checkpoint(rt, cid, image, check=False)
    assert res.returncode == 1, res
    log = (tmp_path / "work" / "dump.log").read_text()
    assert "Error (criu/kerndat.c" in log
    if rt.command != [RUNC]:
        error = [line for line in res.stderr.splitlines() if "level=error" in line]
        assert len(error) == 1, res.stderr
        assert "criu failed: type DUMP errno 0: kerndat_vdso_fill_symtable failed when initializing kerndat." \
            in error[0], error
        assert f"(log: {tmp_path}/work/dump.log)" in error[0]
        assert 'level=warning msg="--- Quoting' in res.stderr      # the lines around CRIU's errors, as runc
    else:
        assert "criu failed: type DUMP errno 0" in res.stderr, res.stderr
    st = rt.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    rt("delete", "-f", cid)


def test_stdio_on_dev_null_is_the_containers_own(pyrun, bundle, tmp_path):
    """conmon gives a detached container the host's /dev/null as stdin; CRIU
    cannot dump a file on a mount outside the container ("Can't lookup mount
    ... path=/dev/null", seen under podman in the VM before the init reopened
    it), so the init's /dev/null stdio must be on one of the container's mounts."""
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    with open(tmp_path / "out", "w") as out:
        pyrun("run", "-d", "-b", str(bundle.path), cid, stdin=-3, stdout=out, stderr=-3)
    pid = pyrun.state(cid)["pid"]
    own_mounts = {line.split()[0] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()}
    for fd in (0, 2):
        mnt = next(line.split()[1] for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                   if line.startswith("mnt_id:"))
        assert mnt in own_mounts, (fd, mnt)
        st = os.stat(f"/proc/{pid}/fd/{fd}")
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert os.readlink(f"/proc/{pid}/fd/1") == str(tmp_path / "out")     # a real file stays as given
    pyrun("delete", "-f", cid)


@pytest.mark.skipif(IN_VM, reason="on the host's kernel CRIU fails; in the VM it works")
def test_criu_failure_at_restore_leaves_nothing(pyrun, bundle, tmp_path):
    """CRIU fails after pyrun made the cgroup, the state directory and the
    bind of the rootfs CRIU needs as its root: all of it goes (the leak check
    looks at mounts, cgroups and state), and the rootfs is untouched."""
    image = tmp_path / "image"
    image.mkdir()
    (image / "descriptors.json").write_text('["pipe:[1]", "pipe:[2]", "pipe:[3]"]')
    before = sorted(os.listdir(bundle.rootfs))
    cid = pyrun.new_id()
    res = pyrun("restore", "-d", "--image-path", str(image), "-b", str(bundle.path), cid, check=False)
    assert res.returncode == 1, res
    error = [line for line in res.stderr.splitlines() if "level=error" in line]
    assert len(error) == 1 and "criu failed: type RESTORE errno 0: " in error[0], res.stderr
    assert f"(log: {image}/restore.log)" in error[0]
    assert not (pyrun.root / cid).exists()
    assert sorted(os.listdir(bundle.rootfs)) == before


def nested_binds(bundle, tmp_path: Path) -> tuple[Path, Path]:
    """runc's checkpoint.bats "with nested bind mounts": /test from one host
    directory, /test/for/nested from another, so the inner mount point is a
    directory create makes inside the outer source."""
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    outer.mkdir()
    inner.mkdir()
    bundle.config["mounts"] += [
        {"destination": "/test", "type": "bind", "source": str(outer), "options": ["rw", "bind"]},
        {"destination": "/test/for/nested", "type": "bind", "source": str(inner), "options": ["rw", "bind"]}]
    bundle.write()
    return outer, inner


@pytest.mark.skipif(IN_VM, reason="on the host's kernel CRIU fails; in the VM it works")
def test_restore_makes_nested_mount_points_before_criu(pyrun, bundle, tmp_path):
    """CRIU mounts onto mount points it does not make. The inner bind's lives
    in the outer bind's source, which may have lost it since the dump: restore
    makes it again there (mounting the outer source while it does, as runc's
    prepareCriuRestoreMounts), before CRIU runs and fails on this kernel; the
    temporary mount goes (the leak check looks at mounts)."""
    outer, _ = nested_binds(bundle, tmp_path)
    image = tmp_path / "image"
    image.mkdir()
    (image / "descriptors.json").write_text('["pipe:[1]", "pipe:[2]", "pipe:[3]"]')
    cid = pyrun.new_id()
    res = pyrun("restore", "-d", "--image-path", str(image), "-b", str(bundle.path), cid, check=False)
    assert "criu failed: type RESTORE errno 0: " in res.stderr, res.stderr
    assert (outer / "for" / "nested").is_dir()
    assert (bundle.rootfs / "test").is_dir()
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert not [p for p in points if p.startswith((str(bundle.rootfs), str(pyrun.root)))], points


# --- in the VM: real checkpoints ---------------------------------------------

@pytest.mark.criu
@needs_criu_kernel
def test_counter_continues_after_restore(rt, bundle, stdio, tmp_path):
    """Also the hooks, as runc runs them: prestart at create and again at
    restore with the restored init's pid; poststop when checkpoint destroys."""
    hooks = tmp_path / "hooks.log"
    bundle.config["hooks"] = {kind: [{"path": "/bin/sh", "args": ["sh", "-c", f"(echo {kind}; cat; echo) >> {hooks}"]}]
                              for kind in ("prestart", "poststop")}
    counter_bundle(bundle)
    log = bundle.rootfs / "count.log"
    cid, pid = start_counter(rt, bundle, stdio, log)
    st = dump_and_restore(rt, bundle, cid, pid, stdio, log, tmp_path)
    entries = hooks.read_text().split("\n")
    kinds = entries[0::2][:3]
    assert kinds == ["prestart", "poststop", "prestart"], entries
    states = [json.loads(e) for e in entries[1::2][:3]]
    assert states[0]["pid"] == pid and states[2]["pid"] == st["pid"], states
    assert states[1]["status"] == "stopped", states
    assert rt("exec", cid, "cat", "/count.log").returncode == 0     # exec joins the restored container
    rt("delete", "-f", cid)


@pytest.mark.criu
@needs_criu_kernel
def test_leave_running_then_restore_into_a_new_id(rt, bundle, stdio, tmp_path):
    counter_bundle(bundle)
    log = bundle.rootfs / "count.log"
    cid, pid = start_counter(rt, bundle, stdio, log)
    image = tmp_path / "image"
    checkpoint(rt, cid, image, "--leave-running")
    st = rt.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    grown = wait_counts(log, len(counts(log)) + 1)        # still counting
    rt("delete", "-f", cid)
    eventually(lambda: proc_state(pid) in ("gone", "Z"), 30)
    stopped_at = counts(log)
    assert len(stopped_at) >= len(grown)
    copy = rt.new_id()
    restore(rt, bundle, copy, image, stdio, "--pid-file", str(tmp_path / "pid"))
    restored_state(rt, copy, tmp_path / "pid")
    assert rt("state", cid, check=False).returncode == 1
    # The copy resumes from the dump, not from 1: its first number follows one the original wrote.
    after = wait_counts(log, len(stopped_at) + 1)
    resumed = after[len(stopped_at)]
    assert 1 < resumed <= len(stopped_at), (resumed, stopped_at)
    assert after[len(stopped_at):] == list(range(resumed, resumed + len(after) - len(stopped_at)))
    rt("delete", "-f", copy)


@pytest.mark.criu
@needs_criu_kernel
def test_pre_dump_then_dump(rt, bundle, stdio, tmp_path):
    counter_bundle(bundle)
    log = bundle.rootfs / "count.log"
    cid, pid = start_counter(rt, bundle, stdio, log)
    parent = tmp_path / "parent"
    checkpoint(rt, cid, parent, "--pre-dump")
    st = rt.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    assert list(parent.glob("pages-*.img")), sorted(os.listdir(parent))
    wait_counts(log, len(counts(log)) + 1)
    dump_and_restore(rt, bundle, cid, pid, stdio, log, tmp_path, "--parent-path", "../parent")
    assert os.readlink(tmp_path / "image" / "parent") == "../parent"     # CRIU linked the pre-dump in
    rt("delete", "-f", cid)


@pytest.mark.criu
@needs_criu_kernel
def test_bind_mounted_directory_is_there_after_restore(rt, bundle, stdio, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(data),
                                    "options": ["rbind", "rw"]})
    counter_bundle(bundle, "/data/count.log")
    log = data / "count.log"
    cid, pid = start_counter(rt, bundle, stdio, log)
    dump_and_restore(rt, bundle, cid, pid, stdio, log, tmp_path)     # counting on in the host directory
    rt("delete", "-f", cid)


@pytest.mark.criu
@needs_criu_kernel
def test_cgroup_limits_are_restored(rt, bundle, stdio, tmp_path):
    bundle.config["linux"]["resources"] = {"pids": {"limit": 77}, "memory": {"limit": 96 * 1024 * 1024}}
    counter_bundle(bundle)
    log = bundle.rootfs / "count.log"
    cid, pid = start_counter(rt, bundle, stdio, log)
    st = dump_and_restore(rt, bundle, cid, pid, stdio, log, tmp_path)
    line = Path(f"/proc/{st['pid']}/cgroup").read_text().strip()
    assert line.startswith("0::/") and len(line.splitlines()) == 1, line     # the VM is cgroup v2 only
    cgroup = Path("/sys/fs/cgroup") / line[4:].lstrip("/")
    assert cgroup != Path("/sys/fs/cgroup")
    assert (cgroup / "pids.max").read_text().strip() == "77"
    assert (cgroup / "memory.max").read_text().strip() == str(96 * 1024 * 1024)
    rt("delete", "-f", cid)


@pytest.mark.parametrize("shell_job", [False, True], ids=["console-socket", "shell-job"])
@pytest.mark.criu
@needs_criu_kernel
def test_tty_container(rt, bundle, tmp_path, shell_job):
    """A terminal container: the restored process gets a new pty, whose master
    arrives on restore's --console-socket and talks to the restored shell."""
    bundle.config["process"]["terminal"] = True
    bundle.set_args("sh", "-c", "while read line; do echo got-$line; done")
    cid = rt.new_id()
    masters: list[int] = []

    def console() -> tuple[socket.socket, Path]:
        path = tmp_path / f"console{len(masters)}.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)
        server.settimeout(120)
        return server, path

    def receive(server: socket.socket) -> int:
        conn, _ = server.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        masters.append(fds[0])
        return fds[0]

    def talk(master: int, word: str) -> None:
        from ptys import read_pty
        os.write(master, f"{word}\n".encode())
        assert f"got-{word}" in read_pty(master, until=f"got-{word}".encode(), timeout=60).decode()

    extra = ("--shell-job",) if shell_job else ()
    try:
        server, path = console()
        with server:
            rt("run", "-d", "-b", str(bundle.path), "--console-socket", str(path), cid, timeout=120,
               stdin=-3, stdout=-3, stderr=-3)
            talk(receive(server), "before")
        pid = rt.state(cid)["pid"]
        image = tmp_path / "image"
        checkpoint(rt, cid, image, *extra)
        assert_gone(rt, cid, pid)
        server, path = console()
        with server:
            restore(rt, bundle, cid, image, None, "--console-socket", str(path), *extra,
                    "--pid-file", str(tmp_path / "pid"))
            master = receive(server)
        restored_state(rt, cid, tmp_path / "pid")
        talk(master, "after")
    finally:
        for fd in masters:
            os.close(fd)
        rt("delete", "-f", cid, check=False)


@pytest.mark.criu
@needs_criu_kernel
def test_nested_bind_mounts_after_their_mount_point_went(rt, bundle, stdio, tmp_path):
    """runc's checkpoint.bats "with nested bind mounts": between dump and
    restore, the inner mount point (inside the outer bind's source) is
    removed; restore makes it again and the counter in the inner one goes on."""
    outer, inner = nested_binds(bundle, tmp_path)
    counter_bundle(bundle, "/test/for/nested/count.log")
    log = inner / "count.log"
    cid, pid = start_counter(rt, bundle, stdio, log)
    image = tmp_path / "image"
    checkpoint(rt, cid, image)
    assert_gone(rt, cid, pid)
    shutil.rmtree(outer / "for")
    before = counts(log)
    restore(rt, bundle, cid, image, stdio, "--pid-file", str(tmp_path / "pid"))
    restored_state(rt, cid, tmp_path / "pid")
    assert_continues(log, before)
    assert (outer / "for" / "nested").is_dir()
    rt("delete", "-f", cid)
