"""pyrun run by an ordinary user: state root, id maps, host files, cgroups, /sys.

Every test runs pyrun as a user this module creates (useradd, with
subordinate ranges; removed at the end) through setpriv, and looks at the
container from inside and from the host.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PYRUN
from rootless_user import (RootlessPyrun, RootlessUser, UserSnapshot, create_user, remove_user,
                           user_bundle, wait_for_no_user_leaks)
from waiting import eventually

pytestmark = pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("newuidmap") is None,
                                reason="needs setpriv and newuidmap (install.sh installs uidmap)")


@pytest.fixture(scope="module")
def user() -> Iterator[RootlessUser]:
    u = create_user("r")
    try:
        yield u
    finally:
        remove_user(u)


@pytest.fixture
def rl(user: RootlessUser) -> Iterator[RootlessPyrun]:
    """pyrun as the user, with a leak check of its processes, mounts and state."""
    before = UserSnapshot.take(user)
    runner = RootlessPyrun(user)
    yield runner
    leaks = wait_for_no_user_leaks(user, before)
    runner.cleanup()
    assert not leaks, f"left behind: {leaks}"


def _json_log(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def _failed(rl: RootlessPyrun, bundle, *global_args: str) -> str:
    """A run that must fail before the container starts: its one error."""
    cid = rl.new_id()
    res = rl("--log-format", "json", *global_args, "run", "-b", str(bundle.path), cid, check=False)
    assert res.returncode != 0, res
    assert not (rl.user.state_root / cid).exists()
    errors = [e for e in _json_log(res.stderr) if e["level"] == "error"]
    assert len(errors) == 1, res.stderr
    return errors[0]["msg"]


def _proc(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_text()


def _map_lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def _stop(rl: RootlessPyrun, cid: str) -> None:
    rl("kill", cid, "KILL")
    rl("delete", "--force", cid)


# --- the state root --------------------------------------------------------------

def test_state_lives_under_xdg_runtime_dir(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["sleep", "60"])
    cid = rl.new_id()
    rl("create", "-b", str(bundle.path), cid)
    st = os.stat(user.state_root)
    assert st.st_uid == user.uid
    assert stat.S_IMODE(st.st_mode) == 0o1700           # sticky, as runc makes it
    assert json.loads((user.state_root / cid / "state.json").read_text())["rootless"] is True
    state = rl.state(cid)
    assert state["status"] == "created"
    listed = json.loads(rl("list", "--format", "json").stdout)
    assert [c["owner"] for c in listed if c["id"] == cid] == [user.name]
    rl("delete", "--force", cid)
    assert not (user.state_root / cid).exists()


def test_without_xdg_runtime_dir_an_ordinary_user_gets_one_clear_error(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["true"])
    env = user.env()
    del env["XDG_RUNTIME_DIR"]
    res = rl("--log-format", "json", "run", "-b", str(bundle.path), rl.new_id(), env=env, check=False)
    assert res.returncode == 1
    entries = _json_log(res.stderr)
    assert len(entries) == 1 and entries[0]["level"] == "error", res.stderr
    assert "/run/pyrun" in entries[0]["msg"] and "permission denied" in entries[0]["msg"]


def test_real_root_ignores_xdg_runtime_dir(tmp_path):
    """runc keeps /run/runc for euid 0 in the initial user namespace."""
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    res = subprocess.run([str(PYRUN), "list", "-q"], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "pyrun").exists()


def test_rootless_flag_values(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["true"])
    res = rl("--rootless", "maybe", "run", "-b", str(bundle.path), rl.new_id(), check=False)
    assert res.returncode != 0 and "--rootless" in res.stderr
    # --rootless=false: cgroup failures are errors again, as with runc
    msg = _failed(rl, bundle, "--rootless=false")
    assert msg.startswith("pyrun run failed: unable to apply cgroup configuration:")
    assert "permission denied" in msg
    rl("--rootless=true", "run", "-b", str(bundle.path), rl.new_id())


# --- identity ---------------------------------------------------------------------

def test_uid_0_inside_is_the_user_outside(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["sleep", "60"])
    cid = rl.new_id()
    rl("run", "-d", "-b", str(bundle.path), cid)
    try:
        pid = rl.state(cid)["pid"]
        assert _map_lines(_proc(pid, "uid_map")) == [["0", str(user.uid), "1"]]
        assert _map_lines(_proc(pid, "gid_map")) == [["0", str(user.gid), "1"]]
        assert _proc(pid, "setgroups").strip() == "deny"       # the kernel's price for an own-id gid_map
        status = dict(line.split(":", 1) for line in _proc(pid, "status").splitlines())
        assert status["Uid"].split() == [str(user.uid)] * 4
        inside = rl("exec", cid, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map").stdout.split()
        assert inside == ["0", "0", "0", str(user.uid), "1"]
    finally:
        _stop(rl, cid)


def test_container_cannot_touch_what_the_user_cannot(rl, user, rootfs_template):
    host = Path(tempfile.mkdtemp(prefix="pyrun-t-rootfiles-", dir="/tmp"))
    try:
        host.chmod(0o755)
        (host / "secret").write_text("root only\n")
        (host / "secret").chmod(0o600)
        (host / "public").write_text("everyone\n")
        (host / "public").chmod(0o644)
        bundle = user_bundle(user, rootfs_template, ["sh", "-c",
                             "cat /host/public; cat /host/secret; echo read=$?; "
                             "echo x >> /host/public; echo append=$?; touch /host/new; echo create=$?; "
                             "chmod 666 /host/secret; echo chmod=$?"])
        bundle.config["mounts"].append({"destination": "/host", "type": "bind", "source": str(host),
                                        "options": ["rbind", "rw"]})
        bundle.write()
        out = rl("run", "-b", str(bundle.path), rl.new_id()).stdout
        assert "everyone" in out and "root only" not in out
        for word in ("read", "append", "create", "chmod"):
            assert f"{word}=1" in out, out
        assert (host / "public").read_text() == "everyone\n"
        assert not (host / "new").exists()
        assert stat.S_IMODE((host / "secret").stat().st_mode) == 0o600
    finally:
        shutil.rmtree(host)


def _data_dir(user: RootlessUser) -> Path:
    data = user.home / f"data-{os.urandom(4).hex()}"
    data.mkdir(mode=0o777)
    data.chmod(0o777)
    os.chown(data, user.uid, user.gid)
    return data


def test_files_created_on_a_bind_mount_belong_to_the_user(rl, user, rootfs_template):
    data = _data_dir(user)
    bundle = user_bundle(user, rootfs_template, ["sh", "-c", "echo hi > /data/made-by-root"])
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(data),
                                    "options": ["rbind", "rw"]})
    bundle.write()
    rl("run", "-b", str(bundle.path), rl.new_id())
    st = (data / "made-by-root").stat()
    assert (st.st_uid, st.st_gid) == (user.uid, user.gid)


def _multi_range(bundle, user: RootlessUser) -> None:
    sub_uid, sub_gid = user.subuid[0], user.subgid[0]
    linux = bundle.config["linux"]
    linux["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                            {"containerID": 1, "hostID": sub_uid, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": user.gid, "size": 1},
                            {"containerID": 1, "hostID": sub_gid, "size": 65536}]


def test_multi_range_mappings_go_through_newuidmap(rl, user, rootfs_template):
    data = _data_dir(user)
    bundle = user_bundle(user, rootfs_template, ["sh", "-c", "touch /data/by-1000; id -G; exec sleep 60"])
    _multi_range(bundle, user)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(data),
                                    "options": ["rbind", "rw"]})
    bundle.write()
    cid = rl.new_id()
    rl("run", "-d", "-b", str(bundle.path), cid)
    try:
        pid = rl.state(cid)["pid"]
        sub_uid, sub_gid = user.subuid[0], user.subgid[0]
        assert _map_lines(_proc(pid, "uid_map")) == [["0", str(user.uid), "1"], ["1", str(sub_uid), "65536"]]
        assert _map_lines(_proc(pid, "gid_map")) == [["0", str(user.gid), "1"], ["1", str(sub_gid), "65536"]]
        status = dict(line.split(":", 1) for line in _proc(pid, "status").splitlines())
        assert status["Uid"].split()[0] == str(sub_uid + 999)       # container 1000 = subordinate 999
        assert status["Groups"].split() == [str(sub_gid + 9)]       # setgroups allowed: newgidmap, not deny
        eventually(lambda: (data / "by-1000").exists(), what="the container to write /data/by-1000")
        st = (data / "by-1000").stat()
        assert (st.st_uid, st.st_gid) == (sub_uid + 999, sub_gid + 999)
        # exec joins the same user namespace: the same ids, container root included
        assert rl("exec", cid, "id", "-u").stdout.strip() == "1000"
        assert rl("exec", "--user", "0:0", cid, "sh", "-c", "touch /data/by-0; id -u").stdout.strip() == "0"
        assert (data / "by-0").stat().st_uid == user.uid
    finally:
        _stop(rl, cid)


@pytest.mark.parametrize("key", ["uidMappings", "gidMappings"])
def test_ids_the_user_does_not_own_fail_cleanly(rl, user, rootfs_template, key):
    bundle = user_bundle(user, rootfs_template, ["true"])
    _multi_range(bundle, user)
    bundle.config["linux"][key][1]["hostID"] = 1          # host ids 1-65536: not the user's
    bundle.write()
    msg = _failed(rl, bundle)
    assert f"linux.{key}: mapping 1:1:65536" in msg and f"user {user.name} does not own" in msg


def test_a_mapping_larger_than_the_subordinate_range_fails(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["true"])
    _multi_range(bundle, user)
    bundle.config["linux"]["uidMappings"][1]["size"] = user.subuid[1] + 1
    bundle.write()
    assert "does not own" in _failed(rl, bundle)


def test_rootless_needs_a_user_namespace(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["true"])
    bundle.config["linux"]["namespaces"] = [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}]
    del bundle.config["linux"]["uidMappings"], bundle.config["linux"]["gidMappings"]
    bundle.write()
    assert _failed(rl, bundle).endswith("rootless container requires user namespaces")


def test_mount_options_naming_unmapped_ids_are_refused(rl, user, rootfs_template):
    """runc's rootless check: the kernel would only say EINVAL."""
    bundle = user_bundle(user, rootfs_template, ["true"])
    pts = next(m for m in bundle.config["mounts"] if m["destination"] == "/dev/pts")
    pts["options"].append("gid=5")
    bundle.write()
    msg = _failed(rl, bundle)
    assert "(/dev/pts): cannot specify gid=5 for rootless containers: no gid mapping covers gid 5" in msg
    _multi_range(bundle, user)            # with subordinate ranges gid 5 is mapped
    bundle.set_args("grep", " /dev/pts ", "/proc/mounts")
    line = rl("run", "-b", str(bundle.path), rl.new_id()).stdout
    assert f",gid={user.subgid[0] + 4}," in line      # devpts shows the host's id of container gid 5


def test_idmapped_mounts_need_root(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["true"])
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(user.home),
                                    "options": ["rbind", "idmap"]})
    bundle.write()
    msg = _failed(rl, bundle)
    assert "idmapped mount of" in msg and "operation not permitted" in msg
    assert msg.endswith("(idmapped mounts of host filesystems need root)")


def test_missing_or_empty_subordinate_files_are_named(tmp_path):
    from pyrun import idmaps
    from pyrun.errors import ConfigError
    wide = [{"containerID": 0, "hostID": 100000, "size": 10}]
    with pytest.raises(ConfigError, match="newuidmap needs subordinate ids from /nonexistent/subuid: no such file"):
        idmaps._check_helper_ranges("uid", wide, "/nonexistent/subuid", "newuidmap")
    other = tmp_path / "subuid"
    other.write_text("someone-else:100000:65536\n")
    with pytest.raises(ConfigError, match="grants no subordinate uids to user"):
        idmaps._check_helper_ranges("uid", wide, str(other), "newuidmap")


# --- cgroups ----------------------------------------------------------------------

def _delegated_v2() -> bool:
    from pyrun.cgroups.layout import detect
    return detect().mode == "v2"


@pytest.mark.skipif(_delegated_v2(), reason="a pure cgroup v2 host may delegate a subtree")
def test_no_writable_cgroup_means_one_warning_and_the_callers_cgroup(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["sleep", "60"])
    cid = rl.new_id()
    res = rl("--log-format", "json", "run", "-d", "-b", str(bundle.path), cid)
    try:
        entries = _json_log(res.stderr)
        assert [e["level"] for e in entries] == ["warning"], res.stderr
        assert "resource limits are not applied" in entries[0]["msg"]
        state = json.loads((user.state_root / cid / "state.json").read_text())
        assert state["cgroup_paths"] == {}
        # the container stays where pyrun was started: this test's own cgroup
        assert _proc(rl.state(cid)["pid"], "cgroup") == Path("/proc/self/cgroup").read_text()
        rl("kill", "--all", cid, "KILL")        # no cgroup: the init is signalled
        rl.state(cid)
    finally:
        rl("delete", "--force", cid)


@pytest.mark.skipif(_delegated_v2(), reason="a pure cgroup v2 host may delegate a subtree")
def test_an_explicit_limit_without_a_cgroup_is_reported(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["true"])
    bundle.config["linux"]["resources"] = {"pids": {"limit": 20}}
    bundle.write()
    assert _failed(rl, bundle).endswith("cannot set pids limit: container could not join or create cgroup")
    bundle.config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    bundle.write()
    rl("run", "-b", str(bundle.path), rl.new_id())    # device rules are best effort, as runc


@pytest.mark.cgroup
def test_a_delegated_cgroup_v2_subtree_is_used(rl, user, rootfs_template):
    """Pure cgroup v2 only (the VM harness): root delegates a subtree to the
    user, as systemd's Delegate= does, and the container's cgroup goes there."""
    from pyrun.cgroups.layout import detect
    layout = detect()
    if layout.mode != "v2" or layout.hierarchies[0].mountpoint != "/sys/fs/cgroup":
        pytest.skip("needs a pure cgroup v2 host")
    top = Path(f"/sys/fs/cgroup/pyrun-t-deleg-{os.getpid()}")
    caller = top / "caller"
    try:
        top.mkdir()
        caller.mkdir()
        for path in (top, top / "cgroup.procs", top / "cgroup.subtree_control", top / "cgroup.threads",
                     caller, caller / "cgroup.procs", caller / "cgroup.threads"):
            os.chown(path, user.uid, user.gid)
        bundle = user_bundle(user, rootfs_template, ["sleep", "60"])
        cid = rl.new_id()
        # start pyrun inside the delegated subtree; the container goes beside it
        script = f'echo $$ > {caller}/cgroup.procs && exec "$@"'
        with tempfile.TemporaryFile("w+") as err:     # a file: the container keeps its stdio open
            res = subprocess.run(["sh", "-c", script, "sh", *user.command(
                [str(PYRUN), "--log-format", "json", "run", "-d", "-b", str(bundle.path), cid])],
                env=user.env(), cwd=str(user.home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err, text=True, timeout=60)
            err.seek(0)
            stderr = err.read()
        assert res.returncode == 0, stderr
        assert "warning" not in stderr
        pid = rl.state(cid)["pid"]
        rel = "/" + str(top.relative_to("/sys/fs/cgroup")) + "/" + cid
        assert f"0::{rel}" in _proc(pid, "cgroup").splitlines()
        rl("delete", "--force", cid)
        assert not (top / cid).exists()
    finally:
        rl.cleanup()
        for d in (top / "caller", top):
            if d.exists():
                for pid in (d / "cgroup.procs").read_text().split():
                    Path("/sys/fs/cgroup/cgroup.procs").write_text(pid)
                d.rmdir()


# --- mounts and devices -------------------------------------------------------------

def test_sysfs_falls_back_to_a_bind_of_the_hosts(rl, user, rootfs_template):
    """Without a network namespace of its own the user may not mount sysfs."""
    bundle = user_bundle(user, rootfs_template, ["sh", "-c",
                         "test -d /sys/kernel && echo kernel; touch /sys/x; echo touch=$?; "
                         "echo > /dev/null && echo null-ok; stat -c %t,%T /dev/null"])
    mounts = bundle.config["mounts"]
    assert any(m["type"] == "sysfs" for m in mounts)
    bundle.write()
    out = rl("run", "-b", str(bundle.path), rl.new_id()).stdout.split()
    assert out == ["kernel", "touch=1", "null-ok", "1,3"]


def test_sysfs_is_mounted_when_the_container_owns_its_network_namespace(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["sh", "-c", "grep ' /sys ' /proc/mounts"])
    bundle.config["linux"]["namespaces"].append({"type": "network"})
    bundle.write()
    line = rl("run", "-b", str(bundle.path), rl.new_id()).stdout
    assert line.startswith("sysfs /sys sysfs ro,")


def test_spec_rootless_runs_as_the_user(rl, user, rootfs_template):
    bundle = user_bundle(user, rootfs_template, ["true"])
    (bundle.path / "config.json").unlink()
    rl("spec", "--rootless", "-b", str(bundle.path))
    config = json.loads((bundle.path / "config.json").read_text())
    from pyrun.spec.schema_loader import load_validator
    load_validator("config").validate(config)
    linux = config["linux"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": user.uid, "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": user.gid, "size": 1}]
    assert "resources" not in linux
    assert [n["type"] for n in linux["namespaces"]][-1] == "user"
    assert "network" not in {n["type"] for n in linux["namespaces"]}
    sys_mount = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert sys_mount == {"destination": "/sys", "type": "none", "source": "/sys",
                         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    assert not any(o.startswith(("uid=", "gid=")) for m in config["mounts"] for o in m.get("options", []))
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "id -u; ls /sys/fs/cgroup | head -1"]
    (bundle.path / "config.json").write_text(json.dumps(config))
    out = rl("run", "-b", str(bundle.path), rl.new_id()).stdout.split()
    assert out[0] == "0" and len(out) == 2
