"""Escape attempts made from inside containers, each shown to be blocked.

Each test names the protection it proves and how it was checked that the test
fails without that protection.
"""
from __future__ import annotations

import os
import platform
import struct
import sys

import pytest


def _pid_of(pyrun, cid: str) -> int:
    return pyrun.state(cid)["pid"]


def test_runtime_interpreter_is_unreachable_through_proc_exe(pyrun, bundle, tmp_path, rootfs_template):
    """CVE-2019-5736 class: pyrun's stages run the host's Python interpreter.

    Container A is created, so its pid 1 is still pyrun's Python init, waiting
    for `start`. Container B joins A's pid namespace and tries to reach that
    interpreter through /proc/1/exe: read the link, open it, open it for
    writing, and read the init's memory. Every attempt must fail, because the
    stages are non-dumpable (PR_SET_DUMPABLE 0 in process/stages.py).
    Checked: with that prctl removed, `readlink /proc/1/exe` prints the host's
    python3 path and the test fails.
    """
    bundle.set_args("sleep", "300")
    a = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), a)
    a_pid = _pid_of(pyrun, a)
    # The init runs the interpreter (sealed in a read-only overlayfs or mount clone, not
    # necessarily the same inode: launcher/pyrun-python.c, pyrun/selfexe.py).
    with open(f"/proc/{a_pid}/exe", "rb") as exe, open(os.path.realpath(sys.executable), "rb") as python:
        assert exe.read() == python.read()

    from conftest import new_bundle
    b = new_bundle(tmp_path / "b", rootfs_template).join_namespace("pid", f"/proc/{a_pid}/ns/pid")
    b.set_args("sh", "-c",
               "readlink /proc/1/exe && echo LINK-READ; "
               "cat /proc/1/exe > /dev/null && echo EXE-READ; "
               "(echo x >> /proc/1/exe) 2>/dev/null && echo EXE-WRITTEN; "
               "head -c 1 /proc/1/mem > /dev/null 2>&1 && echo MEM-READ; "
               "readlink /proc/1/root && echo ROOT-READ; "
               "readlink /proc/1/fd/0 && echo FD-READ; "
               "echo done")
    out = pyrun("run", "-b", str(b.path), pyrun.new_id())
    assert out.stdout.strip().splitlines() == ["done"], out.stdout
    assert "Permission denied" in out.stderr
    pyrun("delete", "-f", a)


@pytest.mark.parametrize("fd", range(3, 10))
def test_leaked_fd_as_cwd_is_refused(pyrun, bundle, fd):
    """CVE-2024-21626 class: `cwd: /proc/self/fd/N` must not land outside the rootfs.

    Whatever fd N is in the init (exec.fifo's O_PATH fd, the init's private
    procfs, a socket, nothing), create fails before the process runs: no fd
    3..9 of the init is a directory inside the rootfs, so chdir either fails
    ("create cwd") or lands outside it and is caught ("switch user"); runc
    fails all of them too ("mkdir /proc/self/fd/N: not a directory").
    Checked: without the getcwd() check in `switch user`, fds 3 and 9 ran the
    process with its cwd outside the container's root (run exited 0); before
    the init lost its state-directory fd, fd 4 put the cwd on the host.
    """
    bundle.config["process"]["cwd"] = f"/proc/self/fd/{fd}"
    bundle.set_args("sh", "-c", "pwd; ls -d ../../../.. ; ls /proc/self/fd")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert (res.returncode, res.stdout) == (1, ""), res       # the process never ran
    assert res.stderr.count("\n") == 1, res.stderr
    prefix = "pyrun run failed: unable to start container process: error during container init: "
    msg = res.stderr.split('msg="', 1)[1].rsplit('"', 1)[0]
    assert msg.startswith(prefix), msg
    assert msg[len(prefix):].rsplit(" (step: ", 1)[1] in ("create cwd)", "switch user)"), msg


def test_fds_above_stdio_never_reach_the_container(pyrun, bundle):
    """Every fd pyrun inherits or opens is close-on-exec (close_range in `exec`).
    Checked: without close_range_cloexec, the caller's inherited fds show up."""
    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        bundle.set_args("sh", "-c", "ls /proc/self/fd")
        out = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), close_fds=False).stdout.split()
    finally:
        os.close(r)
        os.close(w)
    assert set(out) <= {"0", "1", "2", "3"}, out       # 3: the directory ls opens


def _add_caps(config, *caps: str) -> None:
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind] += list(caps)


@pytest.fixture
def host_block_device(tmp_path):
    """A loop device over a small file: a host block device the test owns."""
    import subprocess
    image = tmp_path / "disk.img"
    image.write_bytes(b"\x42" * 65536)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        st = os.stat(dev)
        yield os.major(st.st_rdev), os.minor(st.st_rdev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_host_block_devices_stay_out_of_reach(pyrun, bundle, host_block_device):
    """Without CAP_MKNOD no device node can be made; with it, the device rules
    (deny all, then the defaults) still refuse opening a host block device,
    while an explicit allow rule for it is honoured.
    Checked: with apply_v1 writing no rules, the second run prints OPENED."""
    major, minor = host_block_device
    script = (f"rm -f /tmp/disk; mknod /tmp/disk b {major} {minor} && echo MADE; "
              "head -c 1 /tmp/disk > /dev/null && echo OPENED; echo done")
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["done"] and "Operation not permitted" in out.stderr

    _add_caps(bundle.config, "CAP_MKNOD")
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["MADE", "done"], out.stdout
    assert "Operation not permitted" in out.stderr

    bundle.config["linux"]["resources"] = {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "major": major, "minor": minor, "access": "r"}]}
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["MADE", "OPENED", "done"], out.stdout + out.stderr


def _euid_elf() -> bytes:
    """A 130-byte static x86-64 program: exit(geteuid() & 0xff)."""
    code = bytes.fromhex("b86b0000000f0589c7b83c0000000f05")
    base, hdr = 0x400000, 64 + 56
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 0x3E, 1,
                       base + hdr, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, hdr + len(code), hdr + len(code), 0x1000)
    return ehdr + phdr + code


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the setuid probe is x86-64 machine code")
@pytest.mark.parametrize("nnp, expected", [(True, 1000 & 0xFF), (False, 0)])
def test_setuid_binaries_and_no_new_privs(pyrun, bundle, nnp, expected):
    """no_new_privs: a setuid-root binary cannot raise a user's privileges;
    without it (and without seccomp) it can, as on any Linux system.
    Checked: with the prctl in `set no_new_privs` removed, the NNP case exits 0."""
    probe = bundle.rootfs / "bin" / "euid"
    probe.write_bytes(_euid_elf())
    os.chown(probe, 0, 0)
    os.chmod(probe, 0o4755)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.set_args("/bin/euid")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert res.returncode == expected, res.stderr
