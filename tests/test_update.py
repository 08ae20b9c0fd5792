"""`pyrun update`: limits of a running container change (seen in its cgroup
files, inside and out), are merged into state.json like runc, and bad input
is refused naming the field."""
from __future__ import annotations

import json
import os

import pytest

from pyrun.cgroups.layout import detect

pytestmark = pytest.mark.cgroup

V2 = detect().mode == "v2"
MiB = 1 << 20


@pytest.fixture
def running(pyrun, bundle):
    """A detached `sleep` with a 100 MiB memory and 50 pids limit; its ID."""
    bundle.config["linux"]["resources"].update({"memory": {"limit": 100 * MiB}, "pids": {"limit": 50}})
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    yield cid
    pyrun("delete", "--force", cid)


def cgfile(pyrun, cid: str, controller: str, v1: str, v2: str) -> str:
    paths = json.loads((pyrun.root / cid / "state.json").read_text())["cgroup_paths"]
    if V2:
        path = os.path.join(paths[""], v2)
    else:
        path = os.path.join(next(p for k, p in paths.items() if controller in k.split(",")), v1)
    with open(path) as f:
        return f.read().strip()


def memory_limit(pyrun, cid):
    return int(cgfile(pyrun, cid, "memory", "memory.limit_in_bytes", "memory.max"))


def recorded(pyrun, cid):
    return json.loads((pyrun.root / cid / "state.json").read_text())["config"]["linux"]["resources"]


@pytest.mark.parametrize("spelling", [("--resources=-",), ("--resources", "-"), ("-r", "-")])
def test_resources_from_stdin(pyrun, running, spelling):
    """containerd's shim (both go-runc spellings) and Docker's `update --memory`."""
    pyrun("update", *spelling, running, input=json.dumps({"memory": {"limit": 200 * MiB}}))
    assert memory_limit(pyrun, running) == 200 * MiB
    inside = pyrun("exec", running, "cat", "/sys/fs/cgroup/memory.max" if V2 else
                   "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip()
    assert inside == str(200 * MiB)


def test_resources_from_file_and_merge(pyrun, running, tmp_path):
    """podman passes a file; a later update keeps what an earlier one set."""
    first = tmp_path / "res.json"
    first.write_text(json.dumps({"memory": {"limit": 80 * MiB, "swap": 160 * MiB}, "pids": {"limit": 33}}))
    pyrun("update", "--resources", str(first), running)
    pyrun("update", "--cpu-quota", "30000", "--cpu-period", "100000", running)
    assert memory_limit(pyrun, running) == 80 * MiB
    assert cgfile(pyrun, running, "pids", "pids.max", "pids.max") == "33"
    if V2:
        assert cgfile(pyrun, running, "cpu", "", "cpu.max") == "30000 100000"
        assert cgfile(pyrun, running, "memory", "", "memory.swap.max") == str(80 * MiB)
    else:
        assert cgfile(pyrun, running, "cpu", "cpu.cfs_quota_us", "") == "30000"
        assert cgfile(pyrun, running, "memory", "memory.memsw.limit_in_bytes", "") == str(160 * MiB)
    res = recorded(pyrun, running)
    assert res["memory"] == {"limit": 80 * MiB, "swap": 160 * MiB}
    assert res["pids"] == {"limit": 33} and res["cpu"] == {"quota": 30000, "period": 100000}
    assert "devices" in res      # create's device rules stay recorded, untouched


def test_individual_flags(pyrun, running):
    pyrun("update", "--memory", "64m", "--memory-swap", "128M", "--memory-reservation", "32MiB",
          "--pids-limit", "9", "--cpu-share", "256", "--cpuset-cpus", "0", running)
    assert memory_limit(pyrun, running) == 64 * MiB
    assert cgfile(pyrun, running, "pids", "pids.max", "pids.max") == "9"
    if V2:
        assert cgfile(pyrun, running, "memory", "", "memory.low") == str(32 * MiB)
        # runc >= 1.3's (and crun's) quadratic fit, worked by hand for 256 shares:
        # l = log2(256) = 8; 10 ** ((l*l + 125*l)/612 - 7/34) = 10 ** 1.53268 = 34.09, ceil -> 35
        assert cgfile(pyrun, running, "cpu", "", "cpu.weight") == "35"
    else:
        assert cgfile(pyrun, running, "memory", "memory.soft_limit_in_bytes", "") == str(32 * MiB)
        assert cgfile(pyrun, running, "cpu", "cpu.shares", "") == "256"
        assert cgfile(pyrun, running, "cpuset", "cpuset.cpus", "") == "0"
    pyrun("update", "--memory", "-1", running)      # unlimited memory means unlimited swap too
    assert recorded(pyrun, running)["memory"]["swap"] == -1
    limit = cgfile(pyrun, running, "memory", "memory.limit_in_bytes", "memory.max")
    assert limit == "max" if V2 else int(limit) > 1 << 60


def test_pids_limit_zero_becomes_one(pyrun, running):
    """runc >= 1.2 (v1.4.3 update.bats "update pids.limit"): 0 is written as 1,
    as systemd's TasksMax must be; -1 lifts the limit."""
    pyrun("update", "--pids-limit", "0", running)
    assert cgfile(pyrun, running, "pids", "pids.max", "pids.max") == "1"
    pyrun("update", "--pids-limit", "-1", running)
    assert cgfile(pyrun, running, "pids", "pids.max", "pids.max") == "max"
    pyrun("update", "-r", "-", running, input=json.dumps({"pids": {"limit": 0}}))
    assert cgfile(pyrun, running, "pids", "pids.max", "pids.max") == "1"
    pyrun("update", "-r", "-", running, input=json.dumps({"pids": {"limit": None}}))   # null: keep it
    assert cgfile(pyrun, running, "pids", "pids.max", "pids.max") == "1"


def test_pids_limit_stops_new_processes_after_update(pyrun, running):
    pyrun("update", "--pids-limit", "1", running)
    res = pyrun("exec", running, "true", check=False)
    assert res.returncode != 0


def err(res) -> str:
    assert res.returncode == 1, res
    lines = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert [e["level"] for e in lines] == ["error"], res.stderr
    return lines[0]["msg"]


def test_update_errors_name_the_field(pyrun, running):
    run = lambda *a, **kw: pyrun("update", *a, check=False, global_args=("--log-format", "json"), **kw)  # noqa: E731
    before = (pyrun.root / running / "state.json").read_text()
    assert err(run("--memory", "lots", running)) == "invalid value for memory: invalid size: 'lots'"
    assert err(run("--cpu-period", "-5", running)) == \
        'invalid value for cpu-period: strconv.ParseUint: parsing "-5": invalid syntax'
    assert err(run("-r", "-", running, input='{"memory": {"limit": "1g"}}')) == \
        "json: cannot unmarshal string into Go struct field LinuxMemory.memory.limit of type int64"
    assert "nope.json" in err(run("-r", "/nonexistent/nope.json", running))
    assert err(run("--memory", "10m")) == 'pyrun: "update" requires exactly 1 argument(s)'
    assert err(run("--memory", "10m", "no-such-container")) == "container does not exist"
    msg = err(run("-r", "-", running, input='{"memory": {"limit": 4096, "checkBeforeUpdate": true}}'))
    assert msg.startswith("rejecting memory limit 4096 below current usage"), msg
    if not V2:   # v2 would OOM-kill the container instead of refusing
        msg = err(run("--memory", "4k", running))
        assert msg.startswith("unable to set memory limit to 4096 (current usage:"), msg
    assert (pyrun.root / running / "state.json").read_text() == before    # nothing recorded


def test_update_of_a_stopped_container(pyrun, bundle):
    bundle.set_args("true")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    pyrun.wait_status(cid, "stopped")
    res = pyrun("update", "--memory", "10m", cid, check=False)
    assert res.returncode == 1 and "container not running" in res.stderr
    pyrun("delete", cid)


def test_memory_and_swap_raised_and_lowered_together(pyrun, running):
    """v1 needs memory <= memory+swap after every write: the order depends on the direction."""
    for limit, swap in ((300 * MiB, 600 * MiB), (50 * MiB, 60 * MiB), (400 * MiB, 400 * MiB)):
        pyrun("update", "--memory", str(limit), "--memory-swap", str(swap), running)
        assert memory_limit(pyrun, running) == limit
        if V2:
            assert cgfile(pyrun, running, "memory", "", "memory.swap.max") == str(swap - limit)
        else:
            assert cgfile(pyrun, running, "memory", "memory.memsw.limit_in_bytes", "") == str(swap)


def _own_cpu_v1() -> str | None:
    """Our own directory in a v1 cpu hierarchy (the default cgroupsPath is below it)."""
    with open("/proc/self/cgroup") as f:
        own = {c: p for _n, c, p in (line.rstrip("\n").split(":", 2) for line in f)}
    key = next((k for k in own if "cpu" in k.split(",")), None)
    return None if key is None else os.path.join("/sys/fs/cgroup", key, own[key].lstrip("/"))


def test_cpu_idle_over_recorded_shares(pyrun, bundle):
    """runc update.bats 'update cgroup cpu.idle': the kernel refuses cpu.shares
    (cpu.weight) on an idle cgroup, so an update giving idle alone must not
    write the shares recorded at create again (runc >= 1.2 drops them then)."""
    bundle.config["linux"]["resources"]["cpu"] = {"shares": 100}
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        try:
            cgfile(pyrun, cid, "cpu", "cpu.idle", "cpu.idle")
        except FileNotFoundError:
            pytest.skip("the kernel has no cpu.idle")
        assert cgfile(pyrun, cid, "cpu", "cpu.idle", "cpu.idle") == "0"
        for val in ("1", "0", "1"):
            pyrun("update", "-r", "-", cid, input=json.dumps({"cpu": {"idle": int(val)}}))
            assert cgfile(pyrun, cid, "cpu", "cpu.idle", "cpu.idle") == val
        for val in ("0", "1", "0"):
            pyrun("update", "--cpu-idle", val, cid)
            assert cgfile(pyrun, cid, "cpu", "cpu.idle", "cpu.idle") == val
    finally:
        pyrun("delete", "--force", cid)


@pytest.mark.skipif(V2, reason="cpu.rt_* are cgroup v1 files")
def test_rt_period_shortened_below_current_runtime(pyrun, running):
    """runc issue #4094 (update.bats 'update rt period and runtime'): a new rt
    period shorter than the current runtime is refused until the new, smaller
    runtime is in, so the period is written again after it."""
    own = _own_cpu_v1()
    if own is None or not os.path.exists(os.path.join(own, "cpu.rt_runtime_us")):
        pytest.skip("the kernel has no rt group scheduling")
    if int(open(os.path.join(own, "cpu.rt_runtime_us")).read()) < 600001:
        pytest.skip("our own cpu cgroup has too little rt runtime to give")
    pyrun("update", "--cpu-rt-period", "900001", "--cpu-rt-runtime", "600001", running)
    assert cgfile(pyrun, running, "cpu", "cpu.rt_period_us", "") == "900001"
    assert cgfile(pyrun, running, "cpu", "cpu.rt_runtime_us", "") == "600001"
    pyrun("update", "--cpu-rt-period", "10000", "--cpu-rt-runtime", "3000", running)
    assert cgfile(pyrun, running, "cpu", "cpu.rt_period_us", "") == "10000"
    assert cgfile(pyrun, running, "cpu", "cpu.rt_runtime_us", "") == "3000"


def _a_disk() -> tuple[int, int]:
    """major:minor of a whole disk (throttling refuses partitions), not a loop device."""
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram")):
            major, minor = open(f"/sys/block/{name}/dev").read().split(":")
            return int(major), int(minor)
    pytest.skip("no block device to throttle")


def _throttled(pyrun, cid: str, major: int, minor: int) -> dict[str, str]:
    """What the kernel holds for the device: v1 per file, v2 one io.max line."""
    dev = f"{major}:{minor}"
    if V2:
        line = next(ln for ln in cgfile(pyrun, cid, "io", "", "io.max").splitlines() if ln.startswith(dev + " "))
        return dict(kv.split("=") for kv in line.split()[1:])
    out = {}
    for key, name in (("rbps", "read_bps_device"), ("wbps", "write_bps_device"),
                      ("riops", "read_iops_device"), ("wiops", "write_iops_device")):
        lines = cgfile(pyrun, cid, "blkio", f"blkio.throttle.{name}", "").splitlines()
        out[key] = next(ln.split()[1] for ln in lines if ln.split()[0] == dev)
    return out


def test_per_device_throttles_are_upserted(pyrun, bundle):
    """runc >= 1.3 (update.bats 'update per-device iops/bps values'): update's
    per-device rates replace the recorded entry of that device (the last one
    of duplicates) or are added, instead of being ignored."""
    major, minor = _a_disk()
    dev = {"major": major, "minor": minor}
    bundle.config["linux"]["resources"]["blockIO"] = {
        "throttleReadBpsDevice": [{**dev, "rate": 485760}, {**dev, "rate": 485760}]}
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        pyrun("update", "-r", "-", cid, input=json.dumps({"blockIO": {
            "throttleReadBpsDevice": [{**dev, "rate": 10485760}],
            "throttleWriteBpsDevice": [{**dev, "rate": 9437184}],
            "throttleReadIOPSDevice": [{**dev, "rate": 1000}],
            "throttleWriteIOPSDevice": [{**dev, "rate": 900}]}}))
        assert _throttled(pyrun, cid, major, minor) == \
            {"rbps": "10485760", "wbps": "9437184", "riops": "1000", "wiops": "900"}
        bio = recorded(pyrun, cid)["blockIO"]
        assert bio["throttleReadBpsDevice"] == [{**dev, "rate": 485760}, {**dev, "rate": 10485760}]
        assert bio["throttleWriteIOPSDevice"] == [{**dev, "rate": 900}]
    finally:
        pyrun("delete", "--force", cid)
