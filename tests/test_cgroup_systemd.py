"""--systemd-cgroup: the names, the unit properties, and the refusal on a host
without systemd.

The names and properties are pure functions, pinned to values worked out by
hand from runc's rules and systemd's documentation (never computed by
pyrun).  The scope itself needs systemd as PID 1: tests/test_cgroup_v2_vm.py
boots one (test_systemd_*), as this host has none.
"""
from __future__ import annotations

import json
import os

import pytest

from pyrun.cgroups.systemd import (INFINITY, device_properties, expand_slice, parse_path, range_to_bits,
                                   resource_properties)
from pyrun.errors import PyrunError

NO_SYSTEMD = not os.path.isdir("/run/systemd/system")


@pytest.mark.parametrize("name, path", [
    ("-.slice", "/"),
    ("system.slice", "/system.slice"),
    ("a-b.slice", "/a.slice/a-b.slice"),
    ("kubepods-besteffort-pod12.slice", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice"),
])
def test_expand_slice_nests_each_dash(name, path):
    assert expand_slice(name) == path


@pytest.mark.parametrize("name", ["a.scope", "a/b.slice", "-a.slice", "a--b.slice", "a-.slice", ".slice", "slice"])
def test_expand_slice_refuses_what_runc_refuses(name):
    with pytest.raises(PyrunError) as e:
        expand_slice(name)
    assert str(e.value) == f"invalid slice name: {name}"


@pytest.mark.parametrize("cgroups_path, rootless, expected", [
    (None, False, ("system.slice", "runc-abc.scope")),
    ("", True, ("user.slice", "runc-abc.scope")),
    ("system.slice:docker:abc", False, ("system.slice", "docker-abc.scope")),
    ("kubepods-besteffort-pod1.slice:cri-containerd:abc", False,
     ("kubepods-besteffort-pod1.slice", "cri-containerd-abc.scope")),
    (":pyrun:abc", False, ("system.slice", "pyrun-abc.scope")),
    ("machine.slice:x:inner.slice", False, ("machine.slice", "inner.slice")),
])
def test_cgroups_path_gives_slice_and_unit(cgroups_path, rootless, expected):
    assert parse_path(cgroups_path, "abc", rootless) == expected


SHAPE = 'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups, got "{}" instead'


@pytest.mark.parametrize("bad, message", [
    ("/a/b", SHAPE.format("/a/b")),
    ("a:b", SHAPE.format("a:b")),
    ("a:b:c:d", SHAPE.format("a:b:c:d")),
    ("bad/x.slice:p:n", "invalid slice name: bad/x.slice"),
])
def test_cgroups_path_of_the_wrong_shape_is_refused(bad, message):
    """runc's words (libcontainer/specconv, ExpandSlice)."""
    with pytest.raises(PyrunError) as e:
        parse_path(bad, "abc", False)
    assert str(e.value) == message


def test_range_to_bits_is_little_endian():
    assert range_to_bits("0") == b"\x01"
    assert range_to_bits("0-3,8") == b"\x0f\x01"
    assert range_to_bits("9") == b"\x00\x02"


def test_resources_become_the_properties_systemd_owns():
    res = {
        "memory": {"limit": 100 << 20, "reservation": 50 << 20, "swap": 300 << 20},
        "cpu": {"shares": 1024, "quota": 12345, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 0},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
    }
    props = dict(resource_properties(res))
    assert props == {
        "MemoryMax": ("t", 104857600),
        "MemoryLow": ("t", 52428800),
        "MemorySwapMax": ("t", 209715200),           # swap alone: 300M - 100M
        "CPUWeight": ("t", 100),                      # 1024 shares is the default weight
        "CPUQuotaPeriodUSec": ("t", 100000),
        "CPUQuotaPerSecUSec": ("t", 130000),          # 123450 us/s, rounded up to 10 ms as runc
        "AllowedCPUs": ("ay", b"\x03"),
        "AllowedMemoryNodes": ("ay", b"\x01"),
        "TasksMax": ("t", 1),                         # systemd refuses 0
        "IOWeight": ("t", 4950),                      # 1 + (500-10)*9999/990
        "IOReadBandwidthMax": ("a(st)", [("/dev/block/8:0", 1048576)]),
    }


def test_unlimited_values_are_infinity():
    props = dict(resource_properties({"memory": {"limit": -1}, "pids": {"limit": -1},
                                      "cpu": {"quota": -1, "period": 50000}}))
    assert props["MemoryMax"] == ("t", INFINITY) and INFINITY == 18446744073709551615
    assert props["MemorySwapMax"] == ("t", INFINITY)
    assert props["TasksMax"] == ("t", INFINITY)
    assert props["CPUQuotaPerSecUSec"] == ("t", INFINITY)
    assert props["CPUQuotaPeriodUSec"] == ("t", 50000)


def test_null_pids_limit_sets_no_tasks_max():
    """runc's *int64: JSON null is "keep the current limit", not "infinity"."""
    assert "TasksMax" not in dict(resource_properties({"pids": {"limit": None}}))


def test_old_systemd_gets_no_property_it_does_not_know():
    props = dict(resource_properties({"cpu": {"cpus": "0", "quota": 50000, "period": 100000}}, version=241))
    assert props == {"CPUQuotaPerSecUSec": ("t", 500000)}


def test_default_devices_are_a_strict_whitelist():
    props = dict(device_properties({"linux": {}}))
    assert props["DevicePolicy"] == ("s", "strict")
    assert sorted(props["DeviceAllow"][1]) == sorted([
        ("char-*", "m"), ("block-*", "m"),
        ("/dev/char/1:3", "rwm"), ("/dev/char/1:5", "rwm"), ("/dev/char/1:7", "rwm"),
        ("/dev/char/1:8", "rwm"), ("/dev/char/1:9", "rwm"), ("/dev/char/5:0", "rwm"),
        ("/dev/char/5:1", "rwm"), ("/dev/char/5:2", "rwm"), ("char-136", "rwm"),
    ])


def test_a_later_deny_narrows_the_whitelist():
    spec = {"linux": {"resources": {"devices": [
        {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
        {"allow": False, "type": "c", "major": 10, "access": "w"},
    ]}}}
    allow = dict(dict(device_properties(spec))["DeviceAllow"][1])
    assert allow["/dev/char/10:200"] == "rm"


def test_allow_all_leaves_systemd_at_auto():
    spec = {"linux": {"resources": {"devices": [{"allow": True, "access": "rwm"}]}}}
    assert dict(device_properties(spec)) == {"DevicePolicy": ("s", "auto"), "DeviceAllow": ("a(ss)", [])}


@pytest.mark.skipif(not NO_SYSTEMD, reason="systemd is PID 1 here")
def test_flag_without_systemd_is_one_line_naming_it(pyrun, bundle):
    """runc 1.1.5 and 1.4.3 on this host: "systemd not running on this host,
    cannot use systemd cgroups manager", exit 1; pyrun adds the flag's name.
    Before: the flag was accepted and silently ignored (the run succeeded)."""
    bundle.set_args("true")
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid, check=False,
                global_args=("--systemd-cgroup", "--log-format", "json"))
    assert res.returncode == 1, res
    entries = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    assert entries[0]["msg"] == ("pyrun run failed: systemd not running on this host, cannot use systemd "
                                 "cgroups manager (--systemd-cgroup)")
    assert not (pyrun.root / cid).exists()


# --- a real scope: only where systemd is pid 1 (the systemd VM of test_cgroup_v2_vm.py) ---

needs_systemd = pytest.mark.skipif(NO_SYSTEMD, reason="needs systemd as pid 1 (tests/vm --systemd)")
MiB = 1 << 20


def _show(unit: str, *props: str) -> dict[str, str]:
    import subprocess
    out = subprocess.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)],
                         check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _sd(pyrun, *args, **kw):
    return pyrun(*args, global_args=("--systemd-cgroup",), **kw)


@needs_systemd
def test_scope_holds_the_container_with_its_limits(pyrun, bundle):
    """The unit systemd shows and the files the container sees agree on every
    limit; `update` changes the unit; `delete` leaves neither unit nor cgroup."""
    cid = pyrun.new_id()
    unit = f"pyrun-{cid}.scope"
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:pyrun:{cid}"
    bundle.config["linux"]["resources"] = {"memory": {"limit": 100 * MiB}, "pids": {"limit": 42},
                                           "cpu": {"quota": 20000, "period": 100000}}
    bundle.set_args("sleep", "1000")
    _sd(pyrun, "run", "-d", "-b", str(bundle.path), cid)
    try:
        pid = pyrun.state(cid)["pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            assert f.read() == f"0::/system.slice/{unit}\n"
        shown = _show(unit, "ActiveState", "Delegate", "MemoryMax", "TasksMax", "CPUQuotaPerSecUSec")
        assert shown == {"ActiveState": "active", "Delegate": "yes", "MemoryMax": str(100 * MiB),
                         "TasksMax": "42", "CPUQuotaPerSecUSec": "200ms"}
        inside = _sd(pyrun, "exec", cid, "cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max",
                     "/sys/fs/cgroup/cpu.max").stdout.split("\n")
        assert inside[:3] == [str(100 * MiB), "42", "20000 100000"]

        _sd(pyrun, "update", "--memory", str(200 * MiB), "--pids-limit", "50", cid)
        assert _show(unit, "MemoryMax", "TasksMax") == {"MemoryMax": str(200 * MiB), "TasksMax": "50"}
        with open(f"/sys/fs/cgroup/system.slice/{unit}/memory.max") as f:
            assert f.read().strip() == str(200 * MiB)

        _sd(pyrun, "pause", cid)
        assert pyrun.state(cid)["status"] == "paused"
        _sd(pyrun, "resume", cid)
        assert pyrun.state(cid)["status"] == "running"
    finally:
        _sd(pyrun, "delete", "--force", cid)
    assert _show(unit, "LoadState")["LoadState"] == "not-found"
    assert not os.path.exists(f"/sys/fs/cgroup/system.slice/{unit}")


@needs_systemd
def test_default_path_is_a_runc_scope_in_system_slice(pyrun, bundle):
    cid = pyrun.new_id()
    bundle.set_args("cat", "/proc/self/cgroup")
    out = _sd(pyrun, "run", "-b", str(bundle.path), cid).stdout
    assert out == "0::/\n"                    # a cgroup namespace rooted at the scope
    assert _show(f"runc-{cid}.scope", "LoadState")["LoadState"] == "not-found"


@needs_systemd
def test_nested_slice_is_made_by_systemd(pyrun, bundle):
    cid = pyrun.new_id()
    bundle.config["linux"]["cgroupsPath"] = f"pyrun-test-a.slice:x:{cid}"
    bundle.set_args("sleep", "1000")
    _sd(pyrun, "run", "-d", "-b", str(bundle.path), cid)
    try:
        pid = pyrun.state(cid)["pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            assert f.read() == f"0::/pyrun.slice/pyrun-test.slice/pyrun-test-a.slice/x-{cid}.scope\n"
    finally:
        _sd(pyrun, "delete", "--force", cid)
        import subprocess          # the slices are systemd's (runc leaves them too): ours go here
        subprocess.run(["systemctl", "stop", "pyrun-test-a.slice", "pyrun-test.slice", "pyrun.slice"], check=True)


@needs_systemd
def test_memory_hog_is_oom_killed_in_its_scope(pyrun, bundle):
    cid = pyrun.new_id()
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:pyrun:{cid}"
    bundle.config["linux"]["resources"] = {"memory": {"limit": 16 * MiB, "swap": 16 * MiB}}
    bundle.set_args("sh", "-c", "x=a; while :; do x=$x$x; done")
    res = _sd(pyrun, "run", "-b", str(bundle.path), cid, check=False)
    assert res.returncode == 137, res
