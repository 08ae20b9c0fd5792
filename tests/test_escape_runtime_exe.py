"""The runtime's own executable and processes, attacked from inside containers.

pyrun's stages are forks of the `pyrun` command, so their /proc/<pid>/exe is
the Python interpreter that command was exec'd from.  These tests run pyrun
from a private COPY of the interpreter (`python3` under the test's tmp dir,
started as `<copy> -IS <venv>/bin/pyrun ...`, or through a copy of
pyrun-python beside it): a successful attack modifies only that copy, and
the test sees it in the copy's bytes.  The host's interpreter is never
the target, even with every protection removed.

The container gets the host's /usr/lib and /lib64 read-only (what a Debian
image holds anyway), so the interpreter re-executed inside it finds its
loader and standard library.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import PYRUN, Bundle, Pyrun, new_bundle
from waiting import eventually

# A Python script run by whatever /proc/self/exe is when it is exec'd: the
# interpreter of the process that execs it.  It grabs that file (O_PATH, as
# in CVE-2019-5736), then becomes busybox sh, so that the grabbed file is no
# longer executed by anyone in the container, and tries to write through it.
EVIL = """#!/proc/self/exe
import os, sys
fd = os.open("/proc/self/exe", os.O_PATH)
os.dup2(fd, 7)
if sys.argv[1:] == ["fork"]:          # a hook: return at once, attack in the background
    if os.fork():
        os._exit(0)
    null = os.open("/dev/null", os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(null, n)                  # the runtime reads the hook's output to its end
os.execv("/bin/sh", ["sh", "/attack.sh"])
"""

# Write through fd 7.  "Text file busy" means a pyrun process outside still
# runs the file: wait for those to exit (runc's attack waits for runc to exit),
# up to 30 s; any other error ends the attempt.
ATTACK = """
i=0
while [ $i -lt 600 ]; do
    if { echo PWNED >> /proc/self/fd/7; } 2>/tmp/err; then echo WRITTEN > /result; exit 0; fi
    grep -q busy /tmp/err || break
    sleep 0.05
    i=$((i+1))
done
echo "BLOCKED $(cat /tmp/err)" > /result
"""


class CopyPyrun(Pyrun):
    """pyrun started from a private copy of the interpreter."""

    def __init__(self, root: Path, command: list[str], python: Path, env: dict[str, str]) -> None:
        super().__init__(root)
        self.command = command
        self.python = python
        self.env = env
        self.digest = _digest(python)
        self.refusal = ""      # the attack's expected error, set by the fixture
        self.seal = ""         # the seal its processes must run under: overlayfs, clone or memfd


SHIM = Path(sys.executable).parent / "pyrun-python"
READ_ONLY = "{script}: line 4: can't create /proc/self/fd/7: Read-only file system"
OVERLAYFS_SUPER_MAGIC = 0x794C7630


def overlay_available() -> bool:
    """overlayfs is there and the kernel takes a detached mount as a layer
    (6.15+), which pyrun's overlay needs for its nameless dummy layer."""
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    return release >= (6, 15) and "\toverlay\n" in Path("/proc/filesystems").read_text()


# method -> (how it is started, PYRUN_EXE_COPY, the seal it must yield, the attack's error)
METHODS = {
    "pyrun-python-overlay": ("shim", None, "overlayfs", READ_ONLY),
    "pyrun-python-clone": ("shim", "clone", "clone", READ_ONLY),
    "selfexe-overlay": ("python", None, "overlayfs", READ_ONLY),
    "selfexe-mount": ("python", "clone", "clone", READ_ONLY),
    "selfexe-memfd": ("python", "memfd", "memfd", "sh: write error: Operation not permitted"),
}


@pytest.fixture(params=list(METHODS))
def copy_pyrun(request, pyrun, tmp_path):
    """pyrun from a copy of the interpreter, protected by each mechanism:
    - pyrun-python-*: the console script's interpreter (launcher/pyrun-python.c,
      a copy of it beside the interpreter copy) execs it from a read-only
      overlayfs of its directory, or (PYRUN_EXE_COPY=clone) a read-only
      clone of its mount: the installed path, no second interpreter start;
    - selfexe-*: the interpreter started directly, pyrun.selfexe
      re-executes it from the same overlay or clone (`python -m pyrun`, pip's
      console script, hosts where pyrun-python could not be built);
    - selfexe-memfd: from a sealed memfd copy, the fallback where mounting
      is refused (rootless; forced here by PYRUN_EXE_COPY)."""
    start, force, seal, refusal = METHODS[request.param]
    if seal == "overlayfs" and not overlay_available():
        pytest.skip("no overlayfs over a detached layer here (kernel before 6.15): pyrun uses the mount clone")
    python = tmp_path / "interp" / "python3"
    python.parent.mkdir()
    shutil.copy2(os.path.realpath(sys.executable), python)
    env = dict(os.environ)
    env.pop("PYRUN_EXE_COPY", None)
    if force:
        env["PYRUN_EXE_COPY"] = force
    command = [str(python), "-IS", str(PYRUN)]
    if start == "shim":
        if not SHIM.exists():
            pytest.skip("install.sh could not build pyrun-python here (no C compiler)")
        shutil.copy2(SHIM, python.parent / "pyrun-python")
        command[0] = str(python.parent / "pyrun-python")
    runner = CopyPyrun(pyrun.root, command, python, env)
    runner.seal = seal
    runner.refusal = refusal
    runner.created = pyrun.created         # the pyrun fixture's cleanup and leak check cover these
    return runner


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _host_libraries(bundle: Bundle) -> None:
    for dest in ("/usr/lib", "/lib", "/lib64"):
        src = os.path.realpath(dest)
        (bundle.rootfs / dest[1:]).mkdir(parents=True, exist_ok=True)   # a mapped root could not
        bundle.config["mounts"].append({"destination": dest, "type": "bind", "source": src,
                                 "options": ["rbind", "ro"]})


def _armed(bundle: Bundle) -> Bundle:
    (bundle.rootfs / "evil").write_text(EVIL)
    (bundle.rootfs / "evil").chmod(0o755)
    (bundle.rootfs / "attack.sh").write_text(ATTACK)
    _host_libraries(bundle)
    return bundle.write()


def _result(bundle: Bundle, timeout: float = 40.0) -> str:
    """The attack's verdict, written by the container once it is over."""
    path = bundle.rootfs / "result"

    def written() -> str:
        text = path.read_text()
        return text if text.endswith("\n") else ""
    return eventually(written, timeout=timeout, what="the attack wrote its verdict", ignore=(FileNotFoundError,))


def _assert_blocked(copy_pyrun: CopyPyrun, verdict: str, script: str = "/attack.sh") -> None:
    """`script`: how busybox names the attack script in its errors (run as `sh FILE` or sourced by `sh -c`)."""
    assert _digest(copy_pyrun.python) == copy_pyrun.digest, "the runtime's interpreter file was modified"
    # The handle was grabbed and refused for writing, not merely busy: a
    # read-only clone refuses the open (EROFS), a sealed memfd the write.
    assert verdict == "BLOCKED " + copy_pyrun.refusal.format(script=script) + "\n", verdict


def test_entrypoint_reexecuting_the_runtime(copy_pyrun, bundle):
    """CVE-2019-5736: the entrypoint is `#!/proc/self/exe`, so the init's
    execve runs the runtime's interpreter inside the container; that process
    keeps an O_PATH handle on its own exe and writes through it once `start`
    has exited.  pyrun's processes run the interpreter from a read-only
    overlayfs of its directory or a read-only clone of its mount (EROFS;
    launcher/pyrun-python.c, or pyrun/selfexe.py), or a sealed memfd copy
    (the host file is not reached at all).
    Checked: with `selfexe.ensure()` returning at once and pyrun-python
    built with its whole sealing block disabled (`if (0)`), every case, the
    overlay ones included, fails: the copy gets "PWNED" appended ("the
    runtime's interpreter file was modified"; the leak check then reports
    the container the broken interpreter could not delete).  The same
    holds for every test below that takes `copy_pyrun`.  With only the
    overlay removed, the overlay cases fall back to the clone and still
    pass here: test_runtime_stages_run_from_the_sealed_interpreter is what
    tells the methods apart."""
    _armed(bundle).set_args("/evil")
    cid = copy_pyrun.new_id()
    copy_pyrun("create", "-b", str(bundle.path), cid)
    copy_pyrun("start", cid)
    verdict = _result(bundle)
    _assert_blocked(copy_pyrun, verdict)
    copy_pyrun("delete", "-f", cid)


def test_exec_of_a_script_reexecuting_the_runtime(copy_pyrun, bundle):
    """The same through `pyrun exec -d`: the exec'd process is the forked
    exec stage, whose exe is the runtime's interpreter when it execs.
    Checked: without the protections (see the first test), WRITTEN."""
    _armed(bundle).set_args("sleep", "300")
    cid = copy_pyrun.new_id()
    copy_pyrun("run", "-d", "-b", str(bundle.path), cid)
    copy_pyrun("exec", "-d", cid, "/evil")
    verdict = _result(bundle)
    _assert_blocked(copy_pyrun, verdict)
    copy_pyrun("delete", "-f", cid)


def test_start_container_hook_reexecuting_the_runtime(copy_pyrun, bundle):
    """A startContainer hook is exec'd by the init inside the container: a
    `#!/proc/self/exe` hook re-executes the runtime's interpreter there.
    Checked: without the protections (see the first test), WRITTEN."""
    _armed(bundle).set_args("sleep", "300")
    bundle.config["hooks"] = {"startContainer": [{"path": "/evil", "args": ["evil", "fork"]}]}
    bundle.write()
    cid = copy_pyrun.new_id()
    copy_pyrun("create", "-b", str(bundle.path), cid)
    copy_pyrun("start", cid)
    verdict = _result(bundle)
    _assert_blocked(copy_pyrun, verdict)
    copy_pyrun("delete", "-f", cid)


def _statfs_type(path: str) -> int:
    """f_type of statfs(2) (os.statvfs lacks it)."""
    import ctypes
    buf = ctypes.create_string_buffer(256)
    assert ctypes.CDLL(None, use_errno=True).statfs(path.encode(), buf) == 0, os.strerror(ctypes.get_errno())
    return int.from_bytes(buf.raw[:ctypes.sizeof(ctypes.c_long)], sys.byteorder)


def test_runtime_stages_run_from_the_sealed_interpreter(copy_pyrun, bundle, tmp_path):
    """What the created init (pyrun's stage, waiting for `start`) runs, seen
    from the host: with overlayfs, /proc/<pid>/exe is on a read-only overlay
    (statfs magic), another device than the interpreter file; with the mount
    clone, the same file on a read-only mount; with memfd, a write-sealed
    memfd.  `--debug` create and exec name the method in runc's words (its
    run.bats "[/proc/self/exe clone]" test looks for them).
    Checked: with pyrun-python built without its overlay branch and
    selfexe's _sealed_overlay raising, both overlay cases fail here (f_type
    0xef53, the copy's ext4, not overlayfs' 0x794c7630); runc v1.4.3's
    run.bats test fails likewise with pyrun from before the overlay."""
    import fcntl
    bundle.set_args("sleep", "300")
    cid = copy_pyrun.new_id()
    log = tmp_path / "debug.log"
    copy_pyrun("create", "-b", str(bundle.path), cid, global_args=("--debug", "--log", str(log)))
    exe = f"/proc/{copy_pyrun.state(cid)['pid']}/exe"
    seen, original = os.stat(exe), copy_pyrun.python.stat()
    if copy_pyrun.seal == "overlayfs":
        assert _statfs_type(exe) == OVERLAYFS_SUPER_MAGIC
        assert os.statvfs(exe).f_flag & os.ST_RDONLY
        assert seen.st_dev != original.st_dev
    elif copy_pyrun.seal == "clone":
        assert _statfs_type(exe) == _statfs_type(str(copy_pyrun.python))
        assert os.statvfs(exe).f_flag & os.ST_RDONLY
        assert (seen.st_dev, seen.st_ino) == (original.st_dev, original.st_ino)
    else:
        assert os.readlink(exe).startswith("/memfd:pyrun")
        fd = os.open(exe, os.O_RDONLY | os.O_CLOEXEC)
        try:
            assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE
        finally:
            os.close(fd)
    overlay_line = "runc exeseal: using overlayfs for sealed /proc/self/exe"
    for command in ("create", "exec"):
        if command == "exec":
            log.write_text("")
            copy_pyrun("exec", cid, "true", global_args=("--debug", "--log", str(log)))
        text = log.read_text()
        assert "runc exeseal: using /proc/self/exe clone" in text, (command, text)
        assert (overlay_line in text) == (copy_pyrun.seal == "overlayfs"), (command, text)
    copy_pyrun("delete", "-f", cid)


def _sibling(tmp_path: Path, rootfs_template: Path, pid: int, script: str, *caps: str) -> Bundle:
    """A container in the pid namespace of the process `pid`, with extra caps."""
    b = new_bundle(tmp_path / "sibling", rootfs_template, "sh", "-c", script)
    b.join_namespace("pid", f"/proc/{pid}/ns/pid")
    for kind in ("bounding", "effective", "permitted"):
        b.config["process"]["capabilities"][kind] += list(caps)
    (b.rootfs / "attack.sh").write_text(ATTACK)
    return b.write()


def test_proc_exe_of_the_created_init_with_cap_sys_ptrace(copy_pyrun, bundle, tmp_path, rootfs_template):
    """With CAP_SYS_PTRACE (no user namespace), non-dumpable does not keep a
    container out of /proc/1/exe of the created init, pyrun's interpreter:
    a sibling container in its pid namespace opens it, waits until nothing
    runs it (the test starts the first container) and writes through it.
    Checked: without the protections (see the first test), WRITTEN."""
    bundle.set_args("sleep", "300")
    a = copy_pyrun.new_id()
    copy_pyrun("create", "-b", str(bundle.path), a)
    pid = copy_pyrun.state(a)["pid"]
    b = _sibling(tmp_path, rootfs_template, pid, "exec 7</proc/1/exe && . /attack.sh", "CAP_SYS_PTRACE")
    bid = copy_pyrun.new_id()
    copy_pyrun("run", "-d", "-b", str(b.path), bid)
    # The sibling holds the handle and waits while the init still runs it.
    eventually((b.rootfs / "tmp" / "err").exists, timeout=10, what="the sibling opened /proc/1/exe")
    copy_pyrun("start", a)
    verdict = _result(b)
    _assert_blocked(copy_pyrun, verdict, script="sh: /attack.sh")
    copy_pyrun("delete", "-f", bid)
    copy_pyrun("delete", "-f", a)


def _python_attacker(b: Bundle, python: Path, *args: str) -> Bundle:
    """The sibling runs tests/ptrace_attack.py with a read-only bind of an
    interpreter copy (and the host's libraries): a real ptrace client."""
    _host_libraries(b)
    (b.rootfs / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    (b.rootfs / "usr" / "bin" / "python3").touch()
    b.config["mounts"].append({"destination": "/usr/bin/python3", "type": "bind", "source": str(python),
                               "options": ["bind", "ro"]})
    shutil.copy(Path(__file__).parent / "ptrace_attack.py", b.rootfs / "attack.py")
    b.set_args("/usr/bin/python3", "-I", "/attack.py", *args)
    return b


def test_seizing_the_created_init_reaches_nothing_on_the_host(pyrun, bundle, tmp_path, rootfs_template):
    """CVE-2016-9962 class: a container root with CAP_SYS_PTRACE and no user
    namespace passes every ptrace check on a process in its pid namespace
    (non-dumpable included: the capability is held in the init user
    namespace).  A sibling container in the created container's pid
    namespace PTRACE_SEIZEs its init (pyrun's Python process, waiting for
    `start`), takes every fd it holds with pidfd_getfd (same permission
    check as the seize, but no tracer needed), and from any directory among
    them walks `..` up to the host's root and creates a file there.  The
    seize fails: the init is traced by pyrun's guard (test_escape_ptrace.py);
    pidfd_getfd does not care, so the init must also hold nothing that leads
    out: its exe is read-only (test above), and it waits for `start` on an
    fd of exec.fifo itself, not of the host's state directory.
    Checked: with the init given the state directory's O_PATH fd again (the
    code before this change), the attacker prints "ESCAPED via fd 4" and the
    marker file appears on the host."""
    bundle.set_args("sleep", "300")
    a = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), a)
    pid = pyrun.state(a)["pid"]
    marker = tmp_path / "escaped"
    python = tmp_path / "attacker-python3"
    shutil.copy2(os.path.realpath(sys.executable), python)
    b = _python_attacker(_sibling(tmp_path, rootfs_template, pid, "", "CAP_SYS_PTRACE"),
                         python, "1", str(marker))
    out = pyrun("run", "-b", str(b.path), pyrun.new_id()).stdout
    assert out.splitlines()[0] == "SEIZE Operation not permitted", out    # the guard holds the init ...
    assert "FD 0 " in out, out              # ... but its fds can be taken: the attack ran
    assert "ESCAPED" not in out and not marker.exists(), out
    assert out.rstrip().endswith("END"), out
    pyrun("delete", "-f", a)


def test_runtime_processes_are_not_traceable_from_a_user_namespace(pyrun, open_bundle, tmp_path):
    """Where the kernel allows it, pyrun's processes in a container cannot be
    traced at all: the container has a user namespace, and a process exec'd
    into it (so in its user and pid namespaces) with CAP_SYS_PTRACE tries
    PTRACE_SEIZE on the created init and pidfd_getfd on its fds.  The
    stages are non-dumpable (PR_SET_DUMPABLE 0 in stages.bootstrap; the
    kernel also clears it when the init's uid changes) and their memory
    belongs to the host's user namespace (they were exec'd there, never in
    the container), so CAP_SYS_PTRACE in the container's user namespace
    does not override it: both are refused.
    Checked: with PR_SET_DUMPABLE 1 called in wait_for_start (removing the
    prctl in bootstrap alone is not enough: the uid switch clears it too),
    the attacker prints "SEIZE ok" and the init's fds."""
    open_bundle.config["linux"]["namespaces"].append({"type": "user"})
    open_bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    open_bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    python = open_bundle.path / "attacker-python3"
    shutil.copy2(os.path.realpath(sys.executable), python)
    _python_attacker(open_bundle, python, "1", str(tmp_path / "escaped"))
    open_bundle.set_args("sleep", "300")
    a = pyrun.new_id()
    pyrun("create", "-b", str(open_bundle.path), a)
    out = pyrun("exec", "--cap", "CAP_SYS_PTRACE", a,
                "/usr/bin/python3", "-I", "/attack.py", "1", str(tmp_path / "escaped")).stdout
    lines = out.splitlines()
    assert lines[0] == "SEIZE Operation not permitted", out
    assert lines[-1] == "END", out
    assert not [line for line in lines if line.startswith(("FD ", "ESCAPED"))], out
    pyrun("delete", "-f", a)
