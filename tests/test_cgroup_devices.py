"""Device rules: the eBPF filter for cgroup v2 and what a container can open.

The eBPF tests attach pyrun's program to a fresh directory under the host's
cgroup2 mount (enforced there even on a hybrid host) and move a forked
child into it; the container tests go through whichever enforcer the host
uses (v1 devices controller on hybrid, eBPF on pure v2)."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from conftest import ID_PREFIX
from pyrun.cgroups.devices import Rule, device_rules
from pyrun.cgroups.ebpf import compile_rules
from pyrun.cgroups.layout import detect

pytestmark = pytest.mark.cgroup


def _cgroup2_mount() -> str:
    found = [h.mountpoint for h in detect().hierarchies if h.is_v2]
    if not found:
        pytest.skip("no cgroup2 mount")
    return found[0]


@pytest.fixture
def v2_dir():
    path = os.path.join(_cgroup2_mount(), ID_PREFIX + "bpf-" + uuid.uuid4().hex[:8])
    os.mkdir(path)
    yield path
    os.rmdir(path)


@pytest.fixture
def loop_device(tmp_path):
    """A loop device over a small file: a block device no default rule allows."""
    image = tmp_path / "disk.img"
    image.write_bytes(b"\x42" * 65536)
    res = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"no loop device: {res.stderr.strip()}")
    dev = res.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _opens_in(cgroup_dir: str, attempts: list[tuple[str, int]]) -> list[str]:
    """Fork a child into `cgroup_dir` that opens each (path, flags): "ok" or the error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
                f.write("0")
            out = []
            for path, flags in attempts:
                try:
                    os.close(os.open(path, flags | os.O_CLOEXEC))
                    out.append("ok")
                except OSError as e:
                    out.append(e.strerror)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _attach(cgroup_dir: str, rules: list[Rule]) -> None:
    from pyrun.cgroups.ebpf import attach_filter
    attach_filter(cgroup_dir, rules)


def test_ebpf_filter_denies_and_allows_in_a_cgroup2_directory(v2_dir, loop_device):
    """runc's default rule set as an eBPF program: /dev/null opens, the loop
    device and /dev/kmsg are refused.  Checked: without the attach, all three open."""
    assert _opens_in(v2_dir, [("/dev/null", os.O_RDWR), (loop_device, os.O_RDONLY)]) == ["ok", "ok"]
    _attach(v2_dir, device_rules({"linux": {}}))
    assert _opens_in(v2_dir, [("/dev/null", os.O_RDWR), (loop_device, os.O_RDONLY),
                              ("/dev/kmsg", os.O_WRONLY), ("/dev/zero", os.O_RDONLY)]) == \
        ["ok", "Operation not permitted", "Operation not permitted", "ok"]


def test_ebpf_filter_last_rule_wins_and_access_bits(v2_dir, loop_device):
    """An allow for read only lets the loop device open for reading, not writing;
    a later deny of that device wins over an earlier allow; a final `a` allow resets
    to allow-all."""
    st = os.stat(loop_device)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    base = device_rules({"linux": {}})
    read_only = Rule(True, "b", major, minor, "r")
    _attach(v2_dir, base + [read_only])
    assert _opens_in(v2_dir, [(loop_device, os.O_RDONLY), (loop_device, os.O_WRONLY),
                              (loop_device, os.O_RDWR)]) == ["ok", "Operation not permitted",
                                                             "Operation not permitted"]
    # replacing the program (as an update would) takes effect, and the last match wins
    _attach(v2_dir, base + [Rule(True, "b", major, None, "rwm"), Rule(False, "b", major, minor, "w")])
    assert _opens_in(v2_dir, [(loop_device, os.O_RDONLY), (loop_device, os.O_WRONLY)]) == \
        ["ok", "Operation not permitted"]
    _attach(v2_dir, base + [Rule(True, "a", None, None, "rwm")])
    assert _opens_in(v2_dir, [(loop_device, os.O_RDWR), ("/dev/kmsg", os.O_WRONLY)]) == ["ok", "ok"]
    from pyrun.linux import bpf
    fd = os.open(v2_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        assert len(bpf.prog_query(fd)) == 1          # replaced, not stacked
    finally:
        os.close(fd)


def test_compile_rejects_bad_rules():
    with pytest.raises(ValueError, match="unknown device access"):
        compile_rules([Rule(True, "c", 1, 3, "rx")])
    with pytest.raises(ValueError, match="invalid device type"):
        compile_rules([Rule(True, "p", 1, 3, "rwm")])


def _add_caps(config, *caps: str) -> None:
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind] += list(caps)


SCRIPT = ("mknod /dev/disk b {major} {minor} && echo MADE; "
          "head -c 1 /dev/disk > /dev/null && echo READ; "
          "(echo x > /dev/disk) 2>/dev/null && echo WROTE; "
          "head -c 1 /dev/zero > /dev/null && echo ZERO; echo done")


def test_container_cannot_read_a_denied_device_but_can_read_an_allowed_one(pyrun, bundle, loop_device):
    """Without a rule the container (even with CAP_MKNOD) cannot open the loop
    device; with `allow b M:m r` it reads it but still cannot write it."""
    st = os.stat(loop_device)
    script = SCRIPT.format(major=os.major(st.st_rdev), minor=os.minor(st.st_rdev))
    _add_caps(bundle.config, "CAP_MKNOD")
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["MADE", "ZERO", "done"], out.stdout + out.stderr
    assert "Operation not permitted" in out.stderr

    bundle.config["linux"]["resources"] = {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
         "access": "r"}]}
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["MADE", "READ", "ZERO", "done"], out.stdout + out.stderr


def test_container_opens_a_char_device_only_with_a_rule_for_it(pyrun, bundle):
    """/dev/kmsg (c 1:11) is in every kernel and no default rule covers it:
    a node made for it cannot be opened (write-only: nothing is written)
    until `allow c 1:11 w`.  (Reading stays refused, here possibly by
    dmesg_restrict as well, so only the write-open is the rule's proof.)"""
    _add_caps(bundle.config, "CAP_MKNOD")
    script = ("mknod /dev/k c 1 11 && echo MADE; (: > /dev/k) && echo OPENED_W; "
              "(head -c 0 /dev/k) && echo OPENED_R; echo done")
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["MADE", "done"], out.stdout + out.stderr
    assert out.stderr.count("Operation not permitted") == 2, out.stderr

    bundle.config["linux"]["resources"] = {"devices": [
        {"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"}]}
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["MADE", "OPENED_W", "done"], out.stdout + out.stderr


def test_access_letters_other_than_rwm_are_ignored_as_runc_does(pyrun, bundle):
    """runc's own update.bats writes access "rwa"; runc (1.1 and 1.4) takes it,
    acting on r, w and m alone.  Allowing c 1:11 with "wa" opens /dev/kmsg for
    writing only (the 'a' grants nothing); denying it again with "rwa" after
    an allow shuts it.  Seen failing: create refused the config
    ("'wa' does not match '^[rwm]*$'")."""
    _add_caps(bundle.config, "CAP_MKNOD")
    script = "mknod /dev/k c 1 11 && echo MADE; (: > /dev/k) && echo OPENED_W; echo done"
    bundle.config["linux"]["resources"] = {"devices": [
        {"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "wa"}]}
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["MADE", "OPENED_W", "done"], out.stdout + out.stderr

    bundle.config["linux"]["resources"]["devices"].append(
        {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwa"})
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.stdout.split() == ["MADE", "done"], out.stdout + out.stderr
    assert "Operation not permitted" in out.stderr


def test_container_device_rules_are_in_its_cgroup(pyrun, bundle):
    """hybrid/v1: the rules are the devices.list of the container's cgroup;
    v2: one device program is attached to the container's cgroup."""
    bundle.set_args("sleep", "30")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        with open(pyrun.root / cid / "state.json") as f:
            paths = json.load(f)["cgroup_paths"]
        devices = next((p for k, p in paths.items() if "devices" in k.split(",")), None)
        if devices is not None:
            with open(os.path.join(devices, "devices.list")) as f:
                listed = f.read().split("\n")
            assert "c 1:3 rwm" in listed and "c 136:* rwm" in listed and "a *:* rwm" not in listed
        else:
            from pyrun.linux import bpf
            fd = os.open(paths[""], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                assert len(bpf.prog_query(fd)) == 1
            finally:
                os.close(fd)
    finally:
        pyrun("delete", "--force", cid)
