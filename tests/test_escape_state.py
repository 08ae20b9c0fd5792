"""Escapes through the runtime's own state (issue #15, items 2 and 10).

Item 2 (CVE-2024-21626 class): while a container is `created`, its init must
hold nothing that reaches the host's filesystem; runc's holds only the exec
fifo. A process that can look into the init's /proc/<pid>/fd (a sibling
container in its pid namespace with CAP_SYS_PTRACE, or an `exec` with it)
walks `/proc/1/fd/N/../../..` and lands on the host's / if N is a directory.

Item 10: `<root>/<id>` (or the state.json inside it) replaced by a symlink to
a forged directory must not be trusted: runc answers "container does not
exist", and the host process and cgroup the forged state names survive.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ID_PREFIX, PYRUN, new_bundle

WALK = "/.." * 12        # more `..` than any state directory is deep: / stops the climb


def _pid(pyrun, cid: str) -> int:
    return pyrun.state(cid)["pid"]


@pytest.fixture
def host_marker():
    """A host file outside every bundle and state root: what an escape would reach."""
    d = Path(tempfile.mkdtemp(prefix="pyrun-t-marker-", dir="/tmp"))
    marker = d / "marker"
    marker.write_text("host-secret\n")
    try:
        yield marker
    finally:
        shutil.rmtree(d)


def _walk_script(pid_in_ns: str, marker: Path) -> str:
    """For every fd of the target: read the marker through fd/N/../../..,
    then append to it. Prints the fd list first, so the test knows the fds
    were visible at all (ptrace access granted)."""
    return (f"ls /proc/{pid_in_ns}/fd | tr '\\n' ' ' ; echo; "
            f"for f in /proc/{pid_in_ns}/fd/*; do "
            f"  cat $f{WALK}{marker} 2>/dev/null && echo READ:$f; "
            f"  (echo pwned >> $f{WALK}{marker}) 2>/dev/null && echo WROTE:$f; "
            f"done; echo done")


def _assert_walk_failed(out: str, marker: Path) -> None:
    lines = out.strip().splitlines()
    visible = lines[0].split()
    assert len(visible) >= 4, out      # 0-2 and the fifo at least: the attack could see the fds
    assert lines[1:] == ["done"], out
    assert marker.read_text() == "host-secret\n"


def _with_ptrace(config: dict) -> None:
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")


def test_sibling_in_created_init_pid_ns_cannot_walk_out(pyrun, bundle, tmp_path, rootfs_template, host_marker):
    """Item 2: container A is created (its init waits for `start`); container
    B joins A's pid namespace with CAP_SYS_PTRACE, so /proc/1 is A's init, and
    tries every fd of it: /proc/1/fd/N/../../..<marker> read and appended to.
    Checked: with the init given an O_PATH fd on the state directory again
    (create.py passing the directory instead of cdir.fifo_path_fd(), init.py
    opening "exec.fifo" relative to it), B prints READ:/proc/1/fd/4 and
    WROTE:/proc/1/fd/4 and the host marker gains "pwned"."""
    bundle.set_args("sleep", "300")
    a = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), a, stdin=subprocess.DEVNULL)
    try:
        a_pid = _pid(pyrun, a)
        b = new_bundle(tmp_path / "b", rootfs_template).join_namespace("pid", f"/proc/{a_pid}/ns/pid")
        _with_ptrace(b.config)
        b.set_args("sh", "-c", _walk_script("1", host_marker))
        out = pyrun("run", "-b", str(b.path), pyrun.new_id()).stdout
        _assert_walk_failed(out, host_marker)
        assert pyrun.state(a)["status"] == "created"
    finally:
        pyrun("delete", "-f", a)


def test_exec_with_ptrace_into_created_container_cannot_walk_out(pyrun, bundle, host_marker):
    """Item 2, the `exec` route: a process exec'd into the created container
    with CAP_SYS_PTRACE walks every fd of the init (pid 1 of its namespace).
    Checked: with the state directory fd back in the init (as above), the
    exec prints READ:/proc/1/fd/4 and WROTE:/proc/1/fd/4."""
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid, stdin=subprocess.DEVNULL)
    try:
        out = pyrun("exec", "--cap", "CAP_SYS_PTRACE", cid, "sh", "-c", _walk_script("1", host_marker),
                    stdin=subprocess.DEVNULL).stdout
        _assert_walk_failed(out, host_marker)
        assert pyrun.state(cid)["status"] == "created"
    finally:
        pyrun("delete", "-f", cid)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _is_pty_slave(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and 136 <= os.major(st.st_rdev) <= 143   # UNIX98_PTY_SLAVE_MAJOR


def _recv_master(server: socket.socket) -> int:
    conn, _ = server.accept()
    with conn:
        conn.settimeout(10)
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
    return fds[0]


def _is_private_procfs(pid: int, n: int, rootfs) -> bool:
    """fd n of pid is the init's own procfs: the root of a read-only procfs
    that shows only pids (no sys/, no kcore), whose pid 1 is the container's
    init with the container's rootfs as root, and whose `..` is itself."""
    where = f"/proc/{pid}/fd/{n}"
    st = os.stat(where)
    if not stat.S_ISDIR(st.st_mode) or st.st_ino != 1 or os.path.exists(f"{where}/sys"):
        return False
    assert os.statvfs(where).f_flag & os.ST_RDONLY, where
    assert not os.path.exists(f"{where}/kcore") and not os.path.exists(f"{where}/sysrq-trigger"), where
    up = os.stat(f"{where}/..")
    assert (up.st_dev, up.st_ino) == (st.st_dev, st.st_ino), where
    root = os.stat(f"{where}/1/root")
    assert (root.st_dev, root.st_ino) == (os.stat(rootfs).st_dev, os.stat(rootfs).st_ino), where
    return True


@pytest.mark.parametrize("variant", ["plain", "console-socket", "preserve-fds", "hooks", "idmap"])
def test_created_init_holds_only_stdio_and_the_fifo(pyrun, bundle, tmp_path, variant):
    """Item 2, from the host: every fd of a created init is one it was given
    (stdio, a preserved fd; the pty slave with a console socket) or exec.fifo
    itself, plus the one procfs of the container's own pid namespace the init
    reopens the fifo through (read-only, pid directories only, its process 1's
    root the container's rootfs); no other fd is a directory. With hooks, each prestart/createRuntime/
    createContainer hook sees only its stdio. With an idmapped bind, the
    detached mount the init attached is closed.
    Checked: with the state directory's O_PATH fd back in the init, every
    variant fails on the extra fd (a directory, /run/pyrun-tests-*/<id>);
    without the close in `prepare rootfs`, "idmap" fails on the mount's fd."""
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    files = {0: tmp_path / "in", 1: tmp_path / "out", 2: tmp_path / "err", 3: tmp_path / "preserved"}
    for f in files.values():
        f.write_text("")
    args = ["create", "-b", str(bundle.path), cid]
    hook_out = tmp_path / "hooks"
    if variant == "hooks":
        hook_out.mkdir()
        hooks = bundle.config.setdefault("hooks", {})
        for kind in ("prestart", "createRuntime", "createContainer"):
            hooks[kind] = [{"path": "/bin/sh", "args": ["sh", "-c", f"exec ls /proc/self/fd > {hook_out}/{kind}"]}]
        bundle.write()
    if variant == "preserve-fds":
        args[1:1] = ["--preserve-fds", "1"]
    if variant == "idmap":       # the parent hands the init a detached idmapped mount to attach
        (tmp_path / "data").mkdir()
        one = [{"containerID": 0, "hostID": 1000, "size": 1}]
        bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(tmp_path / "data"),
                                        "options": ["rbind", "idmap"], "uidMappings": one, "gidMappings": one})
        bundle.write()
    server = None
    master = -1
    if variant == "console-socket":
        bundle.config["process"]["terminal"] = True
        bundle.write()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp_path / "console.sock"))
        server.listen(1)
        server.settimeout(10)
        args[1:1] = ["--console-socket", str(tmp_path / "console.sock")]
    opened = {n: os.open(f, os.O_RDWR) for n, f in files.items()}
    try:
        # sh moves its stdin (our file 3) to fd 3 of pyrun: pass_fds would keep the number it has here
        cmd = ["sh", "-c", 'exec "$@" 3<&0 0<"$0"', str(files[0]), str(PYRUN), "--root", str(pyrun.root), *args]
        create = subprocess.Popen(cmd, stdin=opened[3], stdout=opened[1], stderr=opened[2])
        try:
            if server is not None:
                master = _recv_master(server)
        finally:
            assert create.wait(timeout=30) == 0, files[2].read_text()
        pid = _pid(pyrun, cid)
        fifo = os.stat(pyrun.root / cid / "exec.fifo")
        fds = {int(n): os.stat(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
        own = [n for n, st in fds.items() if _is_private_procfs(pid, n, bundle.rootfs)]
        assert len(own) == 1, {n: os.readlink(f"/proc/{pid}/fd/{n}") for n in fds}
        del fds[own[0]]
        assert not [n for n, st in fds.items() if stat.S_ISDIR(st.st_mode)], \
            {n: os.readlink(f"/proc/{pid}/fd/{n}") for n in fds}
        fifo_fds = [n for n, st in fds.items() if _same(st, fifo)]
        assert len(fifo_fds) == 1, fds
        rest = {n: st for n, st in fds.items() if n not in fifo_fds}
        given = {n: os.stat(files[n]) for n in (0, 1, 2)}
        if variant == "preserve-fds":
            given[3] = os.stat(files[3])
        if variant == "console-socket":
            assert sorted(rest) == [0, 1, 2] and all(_is_pty_slave(st) for st in rest.values()), rest
        else:
            assert sorted(rest) == sorted(given), {n: os.readlink(f"/proc/{pid}/fd/{n}") for n in rest}
            assert all(_same(rest[n], given[n]) for n in given)
        if variant == "hooks":
            for kind in ("prestart", "createRuntime", "createContainer"):
                # 0-2 and the directory ls itself opens
                assert (hook_out / kind).read_text().split() == ["0", "1", "2", "3"], kind
    finally:
        for fd in opened.values():
            os.close(fd)
        if master >= 0:
            os.close(master)
        if server is not None:
            server.close()
        pyrun("delete", "-f", cid, check=False)


# --- item 10: a symlinked state directory or state.json ----------------------

# What runc 1.1.5 and 1.4.3 answer, each with --root of its own holding the same
# symlink (checked by hand): every command "container does not exist", exit 1;
# `delete -f` prints nothing and exits 0; both deletes unlink <root>/<id>
# (never what it points to). exec exits 255 ("exec failed: ..."), as runc's.
COMMANDS = [     # (arguments before the ID, after it, runc's exit status)
    (["state"], [], 1), (["delete"], [], 1), (["delete", "-f"], [], 0), (["kill"], [], 1),
    (["kill", "--all"], ["KILL"], 1), (["start"], [], 1), (["pause"], [], 1), (["resume"], [], 1),
    (["ps"], [], 1), (["events", "--stats"], [], 1), (["update", "--pids-limit", "5"], [], 1),
    (["exec"], ["true"], 255),      # every exec failure, as runc
]
FORCE = (["delete", "-f"], [], 0)


def _start_time(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rfind(")") + 2:].split()[19])


@pytest.fixture
def victim():
    """A host process and a foreign cgroup: what a forged state.json names."""
    name = f"{ID_PREFIX}foreign-{os.getpid()}-{time.monotonic_ns()}"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        key, cgroup = "", Path("/sys/fs/cgroup") / name
    else:
        key, cgroup = "pids", Path("/sys/fs/cgroup/pids") / name
    cgroup.mkdir()
    sleep = subprocess.Popen(["sleep", "1000"])
    try:
        yield sleep, key, cgroup
    finally:
        sleep.kill()
        sleep.wait()
        if cgroup.exists():
            cgroup.rmdir()


def _forged_dir(pyrun, bundle, tmp_path, victim, cid: str) -> Path:
    """A state directory outside the state root, holding a genuine pyrun
    state.json (copied from a real container) rewritten to name the victim."""
    sleep, key, cgroup = victim
    real = pyrun.new_id()
    bundle.set_args("sleep", "300")
    pyrun("create", "-b", str(bundle.path), real, stdin=subprocess.DEVNULL)
    try:
        state = json.loads((pyrun.root / real / "state.json").read_text())
    finally:
        pyrun("delete", "-f", real)
    state.update(id=cid, init_process_pid=sleep.pid, init_process_start=_start_time(sleep.pid),
                 cgroup_paths={key: str(cgroup)})
    forged = tmp_path / "forged"
    forged.mkdir(mode=0o711)
    (forged / "state.json").write_text(json.dumps(state))
    (forged / "cgroup.json").write_text(json.dumps({"cgroup_paths": {key: str(cgroup)}}))
    return forged


def _assert_victim_untouched(victim, forged: Path) -> None:
    sleep, _key, cgroup = victim
    assert sleep.poll() is None, "the host process named in the forged state.json was killed"
    assert _start_time(sleep.pid) > 0
    assert cgroup.is_dir(), "the foreign cgroup was removed"
    assert sorted(p.name for p in forged.iterdir()) == ["cgroup.json", "state.json"]


def _run_command(pyrun, argv: list[str], after: list[str], cid: str):
    return pyrun(*argv, cid, *after, check=False, stdin=subprocess.DEVNULL, timeout=20)


def _assert_not_exist(res, argv: list[str], rc: int) -> None:
    assert res.returncode == rc, (argv, res.returncode, res.stdout, res.stderr)
    if rc == 0:
        assert (res.stdout, res.stderr) == ("", ""), (argv, res.stdout, res.stderr)
    else:
        assert res.stderr.count("\n") == 1 and 'msg="' in res.stderr, (argv, res.stderr)
        assert res.stderr.rstrip().endswith('container does not exist"'), (argv, res.stderr)


def test_forged_state_in_a_real_directory_is_what_pyrun_trusts(pyrun, bundle, tmp_path, victim):
    """The control for the two tests below: the forged state is one pyrun
    accepts when it sits in a real directory of its own (`state` reports the
    victim's pid, running). So what stops those attacks is the symlink check,
    not a malformed forgery."""
    cid = pyrun.new_id()
    forged = _forged_dir(pyrun, bundle, tmp_path, victim, cid)
    shutil.copytree(forged, pyrun.root / cid)
    try:
        st = pyrun.state(cid)
        assert (st["id"], st["pid"], st["status"]) == (cid, victim[0].pid, "running")
    finally:
        shutil.rmtree(pyrun.root / cid)
    _assert_victim_untouched(victim, forged)


def test_symlinked_state_dir_is_not_a_container(pyrun, bundle, tmp_path, victim):
    """Item 10: <root>/<id> is a symlink to a forged directory whose state.json
    names a host process (a sleep) and a foreign cgroup. `delete -f` must not
    kill the one nor remove the other, and every command that takes an ID says
    "container does not exist", as runc does; `list` does not show it.
    Checked: without O_NOFOLLOW in ContainerDir.open, `delete -f` SIGKILLs the
    sleep and rmdirs the cgroup."""
    cid = pyrun.new_id()
    forged = _forged_dir(pyrun, bundle, tmp_path, victim, cid)
    link = pyrun.root / cid
    try:
        for argv, after, rc in [FORCE] + COMMANDS:
            if not link.is_symlink():
                link.symlink_to(forged)
            res = _run_command(pyrun, argv, after, cid)
            _assert_victim_untouched(victim, forged)
            _assert_not_exist(res, argv, rc)
            if argv[0] == "delete":      # as runc: the stray entry goes, never what it points to
                assert not link.is_symlink(), argv
        assert link.is_symlink()      # the last command was no delete
        assert cid not in pyrun("list", "-q").stdout.split()
    finally:
        if link.is_symlink():
            link.unlink()
    _assert_victim_untouched(victim, forged)


def test_symlinked_state_json_is_not_a_container(pyrun, bundle, tmp_path, victim):
    """Item 10, one level down: <root>/<id> is a real directory, but its
    state.json (and cgroup.json, which `delete` reads for a crashed create) are
    symlinks into the forged directory. Same answers as above, as runc.
    Checked: without O_NOFOLLOW in ContainerDir.load, `delete -f` SIGKILLs the
    sleep and rmdirs the cgroup; without it in delete's cgroup.json read, a
    directory whose state.json is gone has the foreign cgroup removed."""
    cid = pyrun.new_id()
    forged = _forged_dir(pyrun, bundle, tmp_path, victim, cid)
    cdir = pyrun.root / cid
    try:
        for argv, after, rc in [FORCE] + COMMANDS:
            if not cdir.is_dir():
                cdir.mkdir(mode=0o711)
                (cdir / "state.json").symlink_to(forged / "state.json")
                (cdir / "cgroup.json").symlink_to(forged / "cgroup.json")
            res = _run_command(pyrun, argv, after, cid)
            _assert_victim_untouched(victim, forged)
            _assert_not_exist(res, argv, rc)
            if argv[0] == "delete":      # as runc: the directory goes, never what its links point to
                assert not cdir.exists(), argv
        assert (cdir / "state.json").is_symlink()      # the last command was no delete
        assert cid not in pyrun("list", "-q").stdout.split()
    finally:
        shutil.rmtree(cdir, ignore_errors=True)
    _assert_victim_untouched(victim, forged)


def test_state_of_another_container_is_not_this_one(pyrun, bundle):
    """Item 10, "check what you read": a real directory <root>/<B> holding
    container A's state.json (copied, or linked in by hand) is not container B:
    `delete -f B` must leave A's init alive. (runc 1.1.5 takes the ID from the
    command line and would kill A's init.)
    Checked: without the state["id"] check in ContainerDir.load, `state B`
    exits 0 with A's state, and (that assert skipped) `delete -f B` SIGKILLs
    A's init: A is stopped."""
    bundle.set_args("sleep", "300")
    a, b = pyrun.new_id(), pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), a, stdin=subprocess.DEVNULL)
    try:
        (pyrun.root / b).mkdir(mode=0o711)
        shutil.copyfile(pyrun.root / a / "state.json", pyrun.root / b / "state.json")
        res = pyrun("state", b, check=False)
        assert (res.returncode, res.stderr.rstrip()[-25:]) == (1, 'container does not exist"'), res.stderr
        pyrun("delete", "-f", b)
        assert not (pyrun.root / b).exists()
        assert pyrun.state(a)["status"] == "created"
    finally:
        shutil.rmtree(pyrun.root / b, ignore_errors=True)
        pyrun("delete", "-f", a)
