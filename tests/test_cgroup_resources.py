"""linux.resources as the container sees them: the cgroup files inside it and
the behaviour they cause (OOM kill, fork limit, CPU quota), on v1/hybrid here
and on pure cgroup v2 (the VM harness runs every `cgroup` test there)."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import failed_run
from pyrun.cgroups import convert
from pyrun.cgroups.layout import detect
from waiting import eventually

pytestmark = pytest.mark.cgroup

LAYOUT = detect()
V2 = LAYOUT.mode == "v2"
MiB = 1 << 20


def inner_path(controller: str, name: str) -> str:
    """Where a cgroup file shows inside the busybox bundle's /sys/fs/cgroup."""
    if V2:
        return f"/sys/fs/cgroup/{name}"
    for h in LAYOUT.hierarchies:
        if controller in h.key.split(","):
            return f"/sys/fs/cgroup/{os.path.basename(h.mountpoint)}/{name}"
    pytest.skip(f"no v1 {controller} hierarchy on this host")


def has_v1(controller: str) -> bool:
    return any(controller in h.key.split(",") for h in LAYOUT.hierarchies)


def read_inside(pyrun, bundle, files: dict[str, str], resources: dict) -> dict[str, str]:
    """Run a container with `resources` that prints each file; {label: content}."""
    bundle.config["linux"]["resources"] = resources
    script = "; ".join(f'echo "{label}=$(cat {path})"' for label, path in files.items())
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def host_dir(pyrun, cid: str, controller: str) -> str:
    paths = json.loads((pyrun.root / cid / "state.json").read_text())["cgroup_paths"]
    if V2:
        return paths[""]
    return next(p for k, p in paths.items() if controller in k.split(","))


def test_memory_pids_cpu_limits_are_what_the_container_sees(pyrun, bundle):
    res = {"memory": {"limit": 100 * MiB, "reservation": 50 * MiB, "swap": 200 * MiB},
           "pids": {"limit": 42},
           "cpu": {"shares": 512, "quota": 20000, "period": 100000}}
    if V2:
        files = {"max": inner_path("memory", "memory.max"), "low": inner_path("memory", "memory.low"),
                 "swap": inner_path("memory", "memory.swap.max"), "pids": inner_path("pids", "pids.max"),
                 "weight": inner_path("cpu", "cpu.weight"), "cpumax": inner_path("cpu", "cpu.max")}
        want = {"max": str(100 * MiB), "low": str(50 * MiB), "swap": str(100 * MiB), "pids": "42",
                # runc >= 1.3's quadratic fit for 512 shares, by hand: l = log2(512) = 9,
                # 10 ** ((81 + 1125)/612 - 7/34) = 10 ** 1.76471 = 58.17, ceil -> 59
                "weight": "59", "cpumax": "20000 100000"}
    else:
        files = {"max": inner_path("memory", "memory.limit_in_bytes"),
                 "low": inner_path("memory", "memory.soft_limit_in_bytes"),
                 "swap": inner_path("memory", "memory.memsw.limit_in_bytes"),
                 "pids": inner_path("pids", "pids.max"), "weight": inner_path("cpu", "cpu.shares"),
                 "quota": inner_path("cpu", "cpu.cfs_quota_us"), "period": inner_path("cpu", "cpu.cfs_period_us")}
        want = {"max": str(100 * MiB), "low": str(50 * MiB), "swap": str(200 * MiB), "pids": "42",
                "weight": "512", "quota": "20000", "period": "100000"}
    assert read_inside(pyrun, bundle, files, res) == want


@pytest.mark.parametrize("limit, shown", [(0, "1"), (-1, "max"), (7, "7")])
def test_pids_limit_zero_is_one(pyrun, bundle, limit, shown):
    """runc >= 1.2 (v1.4.3 cgroups.bats "pids.limit=0 means 1"): systemd
    refuses TasksMax=0, so runc writes 1 for 0 with every driver; -1 is no
    limit.  The process is `cat` itself: a pids.max of 1 leaves no fork."""
    bundle.config["linux"]["resources"] = {"pids": {"limit": limit}}
    bundle.set_args("cat", inner_path("pids", "pids.max"))
    assert pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout.strip() == shown


def test_v1_only_memory_knobs(pyrun, bundle):
    if V2:
        pytest.skip("swappiness, oom_control and kmem.tcp are cgroup v1 files (runc ignores them on v2)")
    res = {"memory": {"limit": 64 * MiB, "swappiness": 7, "disableOOMKiller": True, "kernelTCP": 8 * MiB,
                      "useHierarchy": True}}
    files = {"swappiness": inner_path("memory", "memory.swappiness"),
             "hierarchy": inner_path("memory", "memory.use_hierarchy"),
             "oom": inner_path("memory", "memory.oom_control"),
             "tcp": inner_path("memory", "memory.kmem.tcp.limit_in_bytes")}
    got = read_inside(pyrun, bundle, files, res)
    assert got["swappiness"] == "7" and got["tcp"] == str(8 * MiB) and got["hierarchy"] == "1"
    assert got["oom"].startswith("oom_kill_disable 1")


def test_cpuset_and_cpu_idle(pyrun, bundle):
    res = {"cpu": {"cpus": "0", "mems": "0", "idle": 1}}
    name = "cpuset.cpus.effective" if V2 else "cpuset.cpus"
    files = {"cpus": inner_path("cpuset", name), "idle": inner_path("cpu", "cpu.idle")}
    assert read_inside(pyrun, bundle, files, res) == {"cpus": "0", "idle": "1"}


@pytest.mark.skipif(not V2, reason="cgroup v2 only")
def test_realtime_cpu_is_refused_on_v2(pyrun, bundle):
    bundle.config["linux"]["resources"] = {"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 100000}}
    bundle.write()
    assert "not supported on cgroup v2" in failed_run(pyrun, bundle)


def _rt_budget_taken(runtime: int, period: int) -> str:
    """Why v1 would refuse `runtime`/`period` here: the cpu hierarchy's root
    (the containers' parent) lends real-time time to its children, and the
    kernel refuses a child more than what siblings left (EINVAL here).  A
    leftover cgroup from another run can hold it; "" when there is room."""
    root = next(h.mountpoint for h in LAYOUT.hierarchies if "cpu" in h.key.split(","))

    def ratio(d: str) -> float:
        with open(f"{d}/cpu.rt_runtime_us") as f, open(f"{d}/cpu.rt_period_us") as g:
            return max(int(f.read()), 0) / int(g.read())
    holders = {e.path: ratio(e.path) for e in os.scandir(root)
               if e.is_dir() and os.path.exists(f"{e.path}/cpu.rt_runtime_us")}
    holders = {d: r for d, r in holders.items() if r > 0}
    if sum(holders.values()) + runtime / period <= ratio(root) + 1e-9:
        return ""
    return (f"\nthe real-time budget of {root} ({ratio(root):.3f}) is already taken by sibling cgroups "
            f"{holders}: the kernel refuses more; that cgroup is not this test's")


@pytest.mark.skipif(V2, reason="cgroup v1 only")
def test_realtime_cpu(pyrun, bundle):
    res = {"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 100000}}
    busy = _rt_budget_taken(10000, 100000)
    files = {"rt": inner_path("cpu", "cpu.rt_runtime_us"), "period": inner_path("cpu", "cpu.rt_period_us")}
    try:
        got = read_inside(pyrun, bundle, files, res)
    except AssertionError as e:
        raise AssertionError(f"{e}{busy}") from None
    assert got == {"rt": "10000", "period": "100000"}, busy


def _new_cgroup_files(controller: str) -> set[str]:
    """The files the kernel gives a new cgroup of `controller` (v1), made
    where the containers' cgroups go (the hierarchy's root) and removed."""
    h = next(h for h in LAYOUT.hierarchies if controller in h.key.split(","))
    probe = os.path.join(h.mountpoint, f"pyrun-probe-{os.getpid()}")
    os.mkdir(probe)
    try:
        return set(os.listdir(probe))
    finally:
        os.rmdir(probe)


def _v2_io_files() -> set[str]:
    """The files of an existing cgroup v2 child with the io controller on (none: empty)."""
    for entry in os.scandir("/sys/fs/cgroup"):
        try:
            if entry.is_dir() and "io" in open(f"{entry.path}/cgroup.controllers").read().split():
                return set(os.listdir(entry.path))
        except OSError:
            continue
    return set()


# Whether this kernel has a blkio/io weight knob at all: CFQ's blkio.weight,
# BFQ's blkio.bfq.weight / io.bfq.weight (the bfq module loaded), iocost's
# io.weight.  Without CFQ or BFQ (`none`, `mq-deadline`, `kyber` in
# /sys/block/*/queue/scheduler), a v1 blkio cgroup has none of them.
if V2:
    WEIGHT_FILES = _v2_io_files() & {"io.bfq.weight", "io.weight"}
elif has_v1("blkio"):
    WEIGHT_FILES = _new_cgroup_files("blkio") & {"blkio.weight", "blkio.bfq.weight"}
else:
    WEIGHT_FILES = set()


@pytest.mark.skipif(not WEIGHT_FILES, reason="no blkio/io weight file on this kernel (no CFQ, BFQ or iocost)")
def test_block_io_weight(pyrun, bundle):
    """blkio.weight, or BFQ's file when that is the scheduler's; io.weight converted on v2."""
    res = {"blockIO": {"weight": 500}}
    if V2:
        script = "cat /sys/fs/cgroup/io.bfq.weight 2>/dev/null || cat /sys/fs/cgroup/io.weight"
        # runc's ConvertBlkIOToIOWeightValue: 1 + (500 - 10) * 9999 // 990 = 1 + 4949 = 4950
        want = "default 500" if "io.bfq.weight" in WEIGHT_FILES else "default 4950"
    else:
        d = os.path.dirname(inner_path("blkio", "x"))
        script = f"cat {d}/blkio.weight 2>/dev/null || cat {d}/blkio.bfq.weight"
        want = "500"
    bundle.config["linux"]["resources"] = res
    bundle.set_args("sh", "-c", script)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout.strip()
    assert out.splitlines()[0] == want, out


RUNC_115 = "/usr/sbin/runc"


def _error_line(stderr: str, runtime: str, cgroup: str) -> str:
    """The one logrus error line's msg, the runtime's name and the cgroup path normalised."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].split(" ", 1)[1].startswith('level=error msg="'), stderr
    return lines[0].split(" ", 1)[1].replace(cgroup, "CGROUP").replace(runtime, "RT")


@pytest.mark.skipif(V2 or not has_v1("blkio") or bool(WEIGHT_FILES),
                    reason="needs a v1 blkio hierarchy without blkio.weight or blkio.bfq.weight")
@pytest.mark.skipif(not os.path.exists(RUNC_115), reason=f"no runc 1.1.5 at {RUNC_115}")
def test_block_io_weight_without_a_weight_file_fails_as_runc(pyrun, bundle, tmp_path):
    """No CFQ nor BFQ: a weight cannot be set, and `run` fails before the
    container starts, exit 1 and one error line naming the missing file of
    the container's blkio cgroup, as runc 1.1.5 run the same way on this
    host (and runc 1.4.3, measured: the same line).  Where they differ, both
    are pinned: runc tries blkio.bfq.weight when blkio.weight is missing,
    pyrun the other way round; runc sets the limits at procHooks (sent by
    every init with a mount namespace), pyrun at procReady when there are
    no prestart/createRuntime hooks, and says "open" where runc "openat2"."""
    bundle.config["linux"]["resources"] = {"blockIO": {"weight": 500}}
    bundle.write()
    blkio = next(h.mountpoint for h in LAYOUT.hierarchies if "blkio" in h.key.split(","))
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid, check=False)
    rid = pyrun.new_id()       # cleaned up and leak-checked as pyrun's own
    runc = subprocess.run([RUNC_115, "--root", str(tmp_path / "runc-root"), "run", "-b", str(bundle.path), rid],
                          capture_output=True, text=True, timeout=30)
    subprocess.run([RUNC_115, "--root", str(tmp_path / "runc-root"), "delete", "-f", rid], capture_output=True)
    assert (res.returncode, runc.returncode) == (1, 1), (res, runc)
    assert not (pyrun.root / cid).exists()
    assert not os.path.exists(f"{blkio}/{cid}") and not os.path.exists(f"{blkio}/{rid}")
    start = 'level=error msg="RT run failed: unable to start container process: '
    assert _error_line(res.stderr, "pyrun", f"{blkio}/{cid}") == start + (
        'error setting cgroup config for procReady process: '
        'open CGROUP/blkio.weight: no such file or directory"'), res.stderr
    assert _error_line(runc.stderr, "runc", f"{blkio}/{rid}") == start + (
        'error during container init: error setting cgroup config for procHooks process: '
        'openat2 CGROUP/blkio.bfq.weight: no such file or directory"'), runc.stderr


def test_rdma_without_the_device_is_an_error(pyrun, bundle):
    bundle.config["linux"]["resources"] = {"rdma": {"mlx5_nosuch": {"hcaHandles": 3, "hcaObjects": 100}}}
    bundle.write()
    msg = failed_run(pyrun, bundle)
    assert "rdma" in msg, msg


def _block_device() -> str:
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram", "zram")):
            with open(f"/sys/block/{name}/dev") as f:
                return f.read().strip()
    pytest.skip("no disk to throttle")


def test_block_io_throttles(pyrun, bundle):
    dev = _block_device()
    res = {"blockIO": {"throttleReadBpsDevice": [dict(zip(("major", "minor"), map(int, dev.split(":"))), rate=MiB)],
                       "throttleWriteIOPSDevice": [dict(zip(("major", "minor"), map(int, dev.split(":"))), rate=77)]}}
    if V2:
        got = read_inside(pyrun, bundle, {"max": inner_path("io", "io.max")}, res)
        assert got["max"] == f"{dev} rbps={MiB} wbps=max riops=max wiops=77"
    else:
        got = read_inside(pyrun, bundle, {"rbps": inner_path("blkio", "blkio.throttle.read_bps_device"),
                                          "wiops": inner_path("blkio", "blkio.throttle.write_iops_device")}, res)
        assert got == {"rbps": f"{dev} {MiB}", "wiops": f"{dev} 77"}


def test_tiny_limits_still_start_the_process(pyrun, bundle):
    """Limits go in after the runtime's own set-up: pids.max=1 and 4 MiB run /bin/true."""
    bundle.config["linux"]["resources"] = {"pids": {"limit": 1},
                                           "memory": {"limit": 4 * MiB, "swap": 4 * MiB}}
    bundle.set_args("true")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert res.returncode == 0, res.stderr


def test_memory_hog_is_oom_killed(pyrun, bundle):
    bundle.config["linux"]["resources"] = {"memory": {"limit": 100 * MiB, "swap": 100 * MiB}}
    hog = 'x=$(head -c {} /dev/zero | tr "\\000" a); echo survived ${{#x}}'
    bundle.set_args("sh", "-c", hog.format(30 * MiB))
    ok = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == f"survived {30 * MiB}", ok
    bundle.set_args("sh", "-c", hog.format(300 * MiB))
    killed = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False, timeout=60)
    assert killed.returncode == 137 and "survived" not in killed.stdout, killed


def test_fork_bomb_stops_at_pids_max(pyrun, bundle):
    bundle.config["linux"]["resources"] = {"pids": {"limit": 10}}
    # the subshell forks until the kernel says no (busybox sh then exits), its
    # sleeps stay; cat (one more process) reads how many there are
    bundle.set_args("sh", "-c", "(for i in $(seq 1 50); do sleep 3 & done); "
                                "cat " + inner_path("pids", "pids.current"))
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert res.stdout.strip() in ("9", "10"), res
    assert "can't fork: Resource temporarily unavailable" in res.stderr, res.stderr


def _cpu_usage_ns(directory: str) -> int:
    if V2:
        with open(os.path.join(directory, "cpu.stat")) as f:
            return int(dict(line.split() for line in f)["usage_usec"]) * 1000
    with open(os.path.join(directory, "cpuacct.usage")) as f:
        return int(f.read())


def test_cpu_hog_is_held_near_its_quota(pyrun, bundle):
    bundle.config["linux"]["resources"] = {"cpu": {"quota": 20000, "period": 100000}}
    bundle.set_args("sh", "-c", "while :; do :; done")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        directory = host_dir(pyrun, cid, "cpuacct")
        eventually(lambda: _cpu_usage_ns(directory) > 0, what="the loop to run")
        # the window is however long the loop takes to burn 0.4 s of CPU (2 s at
        # a 20% quota), not a fixed sleep: a slow host only stretches it
        t0, u0 = time.monotonic(), _cpu_usage_ns(directory)
        eventually(lambda: _cpu_usage_ns(directory) - u0 >= 400_000_000, 30, "0.4 s of CPU", interval=0.05)
        share = (_cpu_usage_ns(directory) - u0) / ((time.monotonic() - t0) * 1e9)
    finally:
        pyrun("delete", "--force", cid)
    assert 0.10 <= share <= 0.35, share


def test_unwritable_value_names_the_file(pyrun, bundle):
    bundle.config["linux"]["resources"] = {"cpu": {"cpus": "999"}}
    bundle.write()
    msg = failed_run(pyrun, bundle)
    assert "cpuset.cpus" in msg and "error setting cgroup config" in msg, msg


def test_kernel_clamped_cpu_shares_are_refused(pyrun, bundle):
    if V2:
        pytest.skip("cpu.shares is converted to cpu.weight on v2")
    bundle.config["linux"]["resources"] = {"cpu": {"shares": 1}}
    bundle.write()
    assert "the minimum allowed cpu-shares is 2" in failed_run(pyrun, bundle)


def test_swap_below_memory_is_refused(pyrun, bundle):
    bundle.config["linux"]["resources"] = {"memory": {"limit": 64 * MiB, "swap": 32 * MiB}}
    bundle.write()
    msg = failed_run(pyrun, bundle)
    if V2:
        assert "memory+swap limit should be >= memory limit" in msg
    else:
        assert "memory.memsw.limit_in_bytes" in msg and "invalid argument" in msg, msg


def test_swappiness_out_of_range(pyrun, bundle):
    """Refused before anything is forked, naming the field (the schema bounds it)."""
    bundle.config["linux"]["resources"] = {"memory": {"swappiness": 101}}
    bundle.write()
    assert "linux.resources.memory.swappiness" in failed_run(pyrun, bundle)


def test_unified(pyrun, bundle):
    res = {"unified": {"pids.max": "33"}}
    if not V2:
        bundle.config["linux"]["resources"] = res
        bundle.write()
        assert failed_run(pyrun, bundle).endswith("invalid configuration: cannot use unified on cgroup v1")
        return
    assert read_inside(pyrun, bundle, {"p": "/sys/fs/cgroup/pids.max"}, res) == {"p": "33"}
    bundle.config["linux"]["resources"] = {"unified": {"../pids.max": "1"}}
    bundle.write()
    assert "must be a file name (no slashes)" in failed_run(pyrun, bundle)
    bundle.config["linux"]["resources"] = {"unified": {"nosuch.thing": "1"}}
    bundle.write()
    assert "controller \"nosuch\" not available" in failed_run(pyrun, bundle).replace("'", '"')


def test_hugepage_limits(pyrun, bundle):
    res = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]}
    if has_v1("hugetlb"):
        got = read_inside(pyrun, bundle, {"h": inner_path("hugetlb", "hugetlb.2MB.limit_in_bytes")}, res)
        assert got == {"h": str(4 * MiB)}
        return
    v2 = next((h for h in LAYOUT.hierarchies if h.is_v2), None)
    if V2:
        with open(os.path.join(v2.mountpoint, "cgroup.controllers")) as f:
            if "hugetlb" not in f.read().split():
                pytest.skip("this kernel's cgroup2 has no hugetlb controller")
        assert read_inside(pyrun, bundle, {"h": "/sys/fs/cgroup/hugetlb.2MB.max"}, res) == {"h": str(4 * MiB)}
        return
    # hybrid: hugetlb is not a v1 mount; pyrun uses the cgroup2 one only where
    # the container's parent there enables it, and never changes the host's
    from pyrun.cgroups.layout import own_cgroups
    parent = os.path.join(v2.mountpoint, own_cgroups().get("", "/").lstrip("/")) if v2 else ""
    if v2 and "hugetlb" in open(os.path.join(parent, "cgroup.subtree_control")).read().split():
        pytest.skip("hugetlb is enabled below the cgroup2 mount here: nothing to refuse")
    bundle.config["linux"]["resources"] = res
    bundle.write()
    assert "cannot set hugetlb limit: container could not join or create cgroup" in failed_run(pyrun, bundle)


def test_network_class_id(pyrun, bundle):
    res = {"network": {"classID": 0x100001, "priorities": [{"name": "lo", "priority": 3}]}}
    if V2:
        bundle.config["linux"]["resources"] = res
        bundle.set_args("true")
        pyrun("run", "-b", str(bundle.path), pyrun.new_id())    # no v2 file: ignored, as runc
        return
    if has_v1("net_cls") and has_v1("net_prio"):
        got = read_inside(pyrun, bundle, {"c": inner_path("net_cls", "net_cls.classid")}, res)
        assert got == {"c": str(0x100001)}
        return
    bundle.config["linux"]["resources"] = res
    bundle.write()
    assert "limit: container could not join or create cgroup" in failed_run(pyrun, bundle)


def test_conversions_match_runc():
    # runc >= 1.3's quadratic fit (older runc was linear: 1 + (shares - 2) * 9999 // 262142)
    assert [convert.cpu_shares_to_weight(s) for s in (0, 2, 256, 512, 1024, 262144)] == [0, 1, 35, 59, 100, 10000]
    assert [convert.blkio_weight_to_io_weight(w) for w in (0, 10, 500, 1000)] == [0, 1, 4950, 10000]
    assert convert.swap_to_v2(200, 100) == 100 and convert.swap_to_v2(0, -1) == -1
    assert convert.swap_to_v2(-1, 100) == -1 and convert.swap_to_v2(0, 100) == 0
    assert [convert.hugepage_size(s) for s in ("2MB", "2048KB", "1GB", "64KB")] == ["2MB", "2MB", "1GB", "64KB"]


HOOK = """
import json, sys
pid = json.load(sys.stdin)["pid"]
for line in open(f"/proc/{pid}/cgroup"):
    _n, keys, path = line.rstrip("\\n").split(":", 2)
    if (keys == "") == V2 and (V2 or "pids" in keys.split(",")):
        base = "/sys/fs/cgroup" if V2 else "/sys/fs/cgroup/pids"
        with open(OUT, "w") as f:
            f.write(open(base + path + "/pids.max").read())
"""


def test_prestart_hooks_see_the_limits(pyrun, bundle, tmp_path):
    """As runc (procHooks): the limits are in before prestart/createRuntime run."""
    import sys
    out = tmp_path / "pids.max"
    code = f"V2 = {V2}; OUT = {str(out)!r}" + HOOK
    bundle.config["hooks"] = {"prestart": [{"path": sys.executable, "args": ["python3", "-c", code]}]}
    bundle.config["linux"]["resources"] = {"pids": {"limit": 7}}
    bundle.set_args("true")
    pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert out.read_text().strip() == "7"
