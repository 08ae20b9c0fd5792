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
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ID_PREFIX, PYRUN, Bundle, make_config

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
        b_dir = tmp_path / "b"
        shutil.copytree(rootfs_template, b_dir / "rootfs", symlinks=True)
        b = Bundle(b_dir, make_config(["true"]))
        b.config["linux"]["namespaces"] = [
            n if n["type"] != "pid" else {"type": "pid", "path": f"/proc/{a_pid}/ns/pid"}
            for n in b.config["linux"]["namespaces"]]
        _with_ptrace(b.config)
        b.set_args("sh", "-c", _walk_script("1", host_marker))
        out = pyrun("run", "-b", str(b_dir), pyrun.new_id()).stdout
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


@pytest.mark.parametrize("variant", ["plain", "console-socket", "preserve-fds", "hooks"])
def test_created_init_holds_only_stdio_and_the_fifo(pyrun, bundle, tmp_path, variant):
    """Item 2, from the host: every fd of a created init is one it was given
    (stdio, a preserved fd; the pty slave with a console socket) or exec.fifo
    itself; none is a directory. With hooks, each prestart/createRuntime/
    createContainer hook sees only its stdio.
    Checked: with the state directory's O_PATH fd back in the init, every
    variant fails on the extra fd (a directory, /run/pyrun-tests-*/<id>)."""
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
