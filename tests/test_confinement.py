"""Confinement and placement of the container's process: LSM labels (refused on
this host, which has neither AppArmor nor SELinux), Intel RDT (no resctrl),
personality, scheduler, I/O priority, NUMA memory policy and netDevices.

Assertions are made from inside busybox containers, or from the host on the
container's own process; refusals must be one line naming the field, with
nothing left behind (the `pyrun` fixture's leak check).
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from pyrun.cgroups.layout import container_paths
from test_cli_fidelity import runc_143  # noqa: F401 (a fixture)
from test_init_failures import runtime  # noqa: F401 (a fixture: pyrun and runc 1.4.3)
from waiting import eventually


def run_out(pyrun, bundle, *args: str) -> str:
    bundle.set_args(*args)
    return pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout


def refused(pyrun, bundle, tmp_path: Path) -> str:
    """`create` must fail with exactly one line, logged as one JSON error entry."""
    cid = pyrun.new_id()
    log = tmp_path / f"log-{cid}.json"
    bundle.write()
    res = pyrun("create", "-b", str(bundle.path), cid, check=False,
                global_args=("--log", str(log), "--log-format", "json"))
    assert res.returncode != 0, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["error"] and entries[0]["msg"] == lines[0]
    assert not (pyrun.root / cid).exists()
    return lines[0]


def proc_sched(text: str) -> dict[str, str]:
    """`/proc/<pid>/sched` as {key: value}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def stat_fields(text: str) -> list[str]:
    """`/proc/<pid>/stat` split after the command name: index 0 is field 3."""
    return text[text.rfind(")") + 2:].split()


# --- LSM labels and RDT: refused before anything is created -----------------------------

def _no_apparmor() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() != "Y"
    except OSError:
        return True


def _no_selinux() -> bool:
    with open("/proc/self/mountinfo") as f:
        return not any(line.partition(" - ")[2].startswith("selinuxfs ") for line in f)


@pytest.mark.skipif(not _no_apparmor(), reason="AppArmor is enabled on this host")
def test_apparmor_profile_without_apparmor_is_refused(pyrun, bundle, tmp_path):
    bundle.config["process"]["apparmorProfile"] = "pyrun-test-profile"
    line = refused(pyrun, bundle, tmp_path)
    assert line.startswith("pyrun create failed: ")
    assert "process.apparmorProfile" in line and "AppArmor is not enabled" in line


@pytest.mark.skipif(not _no_selinux(), reason="SELinux is enabled on this host")
@pytest.mark.parametrize("field", ["process.selinuxLabel", "linux.mountLabel"])
def test_selinux_labels_without_selinux_are_refused(pyrun, bundle, tmp_path, field):
    section, key = field.split(".")
    bundle.config[section][key] = "system_u:system_r:container_t:s0:c1,c2"
    line = refused(pyrun, bundle, tmp_path)
    assert field in line and "SELinux is not enabled" in line


def test_intel_rdt_without_resctrl_is_refused(pyrun, bundle, tmp_path):
    with open("/proc/self/mountinfo") as f:
        if any(line.partition(" - ")[2].startswith("resctrl ") for line in f):
            pytest.skip("resctrl is mounted on this host")
    bundle.config["linux"]["intelRdt"] = {"closID": "pyrun-test", "l3CacheSchema": "L3:0=f"}
    line = refused(pyrun, bundle, tmp_path)
    assert "linux.intelRdt" in line and "resctrl is not available" in line


# --- personality --------------------------------------------------------------------------

MACHINE32 = {"x86_64": "i686", "aarch64": "armv8l"}


@pytest.mark.skipif(os.uname().machine not in MACHINE32, reason="no 32-bit personality known here")
def test_personality_linux32(pyrun, bundle):
    bundle.config["linux"]["personality"] = {"domain": "LINUX32"}
    out = run_out(pyrun, bundle, "sh", "-c", "uname -m; cat /proc/self/personality")
    assert out.splitlines() == [MACHINE32[os.uname().machine], "00000008"]


def test_personality_linux(pyrun, bundle):
    bundle.config["linux"]["personality"] = {"domain": "LINUX"}
    out = run_out(pyrun, bundle, "sh", "-c", "uname -m; cat /proc/self/personality")
    assert out.splitlines() == [os.uname().machine, "00000000"]


@pytest.mark.parametrize("domain", ["LINUX", "LINUX32"])
def test_personality_is_set_before_a_seccomp_profile_that_denies_it(runtime, bundle, domain):
    """runc v1.4.3 personality.bats "runc run with personality syscall blocked
    by seccomp": runc sets the personality before loading the filter, so the
    container starts with it, and the filter then denies personality(2) to
    the container itself (busybox linux32/linux64 call it). Before: pyrun set
    it after loading seccomp and failed "linux.personality: personality LINUX:
    operation not permitted (step: set personality)"."""
    if domain == "LINUX32" and os.uname().machine not in MACHINE32:
        pytest.skip("no 32-bit personality known here")
    machine = MACHINE32[os.uname().machine] if domain == "LINUX32" else os.uname().machine
    bundle.config["linux"]["personality"] = {"domain": domain}
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO"}],
    }
    bundle.set_args("sh", "-c", "uname -m; cat /proc/self/personality; "
                    "linux32 true 2>/dev/null; echo linux32=$?; linux64 true 2>/dev/null; echo linux64=$?")
    out = runtime("run", "-b", str(bundle.path), runtime.new_id()).stdout
    assert out.splitlines() == [machine, "00000008" if domain == "LINUX32" else "00000000",
                                "linux32=1", "linux64=1"], out


def test_personality_flags_are_refused(pyrun, bundle, tmp_path):
    """The runtime-spec defines no flags: asking for one must not pass silently."""
    bundle.config["linux"]["personality"] = {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}
    line = refused(pyrun, bundle, tmp_path)
    assert "linux.personality.flags" in line and "ADDR_NO_RANDOMIZE" in line


# --- scheduler ---------------------------------------------------------------------------

def test_sched_batch_with_nice(pyrun, bundle):
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
    out = run_out(pyrun, bundle, "sh", "-c", "cat /proc/self/stat; echo; cat /proc/self/sched")
    stat_line, _, sched = out.partition("\n")
    assert stat_fields(stat_line)[16] == "5"        # field 19: nice
    assert stat_fields(stat_line)[38] == "3"        # field 41: policy
    if sched.strip():                                # CONFIG_SCHED_DEBUG
        assert proc_sched(sched)["policy"] == "3"


def test_sched_idle(pyrun, bundle):
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_IDLE"}
    out = run_out(pyrun, bundle, "cat", "/proc/self/stat")
    assert stat_fields(out)[38] == "5"


def test_sched_other_keeps_negative_nice(pyrun, bundle):
    """A lower nice than the caller's needs CAP_SYS_NICE: set before the capability drop."""
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_OTHER", "nice": -7}
    out = run_out(pyrun, bundle, "cat", "/proc/self/stat")
    assert stat_fields(out)[16] == "-7" and stat_fields(out)[38] == "0"
    assert "CAP_SYS_NICE" not in bundle.config["process"]["capabilities"]["bounding"]


def _cpu_cgroup(cid: str) -> str | None:
    """The container's v1 cpu cgroup directory when the host has RT group
    scheduling (CONFIG_RT_GROUP_SCHED: cpu.rt_runtime_us files), else None."""
    cpu = next((p for k, p in container_paths(None, cid).items() if "cpu" in k.split(",")), None)
    if cpu is None or not os.path.exists(os.path.join(os.path.dirname(cpu), "cpu.rt_runtime_us")):
        return None
    return cpu


@pytest.fixture
def rt_budget(pyrun) -> Iterator[str]:
    """A container ID whose cpu cgroup is pre-made with real-time time.

    With RT group scheduling a new cpu cgroup has cpu.rt_runtime_us = 0 and
    the kernel refuses SCHED_FIFO/RR in it; this test's config gives none
    (linux.resources.cpu.realtimeRuntime), so the cgroup gets one here."""
    cid = pyrun.new_id()
    cpu = _cpu_cgroup(cid)
    if cpu is None:
        yield cid                    # no RT group scheduling: nothing to prepare
        return
    os.makedirs(cpu)
    try:
        Path(cpu, "cpu.rt_runtime_us").write_text("10000")
        yield cid
    finally:
        if os.path.isdir(cpu):
            os.rmdir(cpu)


def test_sched_fifo_priority(pyrun, bundle, rt_budget):
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 10}
    bundle.set_args("cat", "/proc/self/stat")
    out = pyrun("run", "-b", str(bundle.path), rt_budget).stdout
    fields = stat_fields(out)
    assert fields[38] == "1"        # field 41: policy SCHED_FIFO
    assert fields[37] == "10"       # field 40: rt_priority


@pytest.mark.skipif(_cpu_cgroup("probe") is None, reason="no real-time group scheduling on this host")
def test_sched_rt_without_rt_budget_is_one_line(pyrun, bundle, tmp_path):
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_RR", "priority": 5}
    line = refused(pyrun, bundle, tmp_path)
    assert "set scheduling" in line and "process.scheduler" in line and "SCHED_RR" in line
    assert "realtimeRuntime" in line


DEADLINE = {"policy": "SCHED_DEADLINE", "nice": 19, "runtime": 42000, "deadline": 1000000, "period": 1000000}
ALLOWED_CPUS = "process scheduler can't be used together with AllowedCPUs"


def one_json_error(res) -> str:
    entries = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    return entries[0]["msg"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a cpuset of one CPU restricts nothing on one CPU")
def test_sched_deadline_with_a_cpuset_is_refused_in_runcs_words(runtime, bundle, tmp_path):
    """runc v1.3.6 scheduler.bats "scheduler vs cpus": a SCHED_DEADLINE task
    must be free to run on every CPU of its root domain (sched_setattr(2):
    EPERM), so linux.resources.cpu.cpus narrowing it makes runc fail with
    `process scheduler can't be used together with AllowedCPUs`, for `run`
    and for `exec` (any policy: runc reads every EPERM so when there is a
    cpuset). Before: pyrun wrote the cpuset after the init set its policy,
    and the container ran SCHED_DEADLINE pinned to CPU 0."""
    bundle.config["linux"].setdefault("resources", {})["cpu"] = {"cpus": "0"}
    bundle.config["process"]["scheduler"] = DEADLINE
    bundle.set_args("sleep", "300")
    cid = runtime.new_id()
    res = runtime("run", "-d", "-b", str(bundle.path), cid, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1, res
    msg = one_json_error(res)
    assert msg.startswith(f"{runtime.program} run failed: unable to start container process: "), msg
    assert msg.endswith(runtime.init_error(ALLOWED_CPUS, "set scheduling")), msg
    assert not (runtime.root / cid).exists()

    del bundle.config["process"]["scheduler"]
    bundle.write()
    runtime("run", "-d", "-b", str(bundle.path), cid)
    for sched in (DEADLINE, {"policy": "SCHED_FIFO", "priority": 10}):
        process = tmp_path / "process.json"
        process.write_text(json.dumps({**bundle.config["process"], "args": ["true"], "scheduler": sched}))
        res = runtime("exec", "-p", str(process), cid, check=False, global_args=("--log-format", "json"))
        assert res.returncode == 255, res
        msg = one_json_error(res)
        assert msg.startswith("exec failed: unable to start container process: ") \
            and msg.endswith(runtime.init_error(ALLOWED_CPUS, "set scheduling")), msg
    runtime("delete", "--force", cid)


def test_sched_deadline_with_every_cpu_in_the_cpuset_runs(runtime, bundle):
    """The same policy with a cpuset of every CPU narrows nothing: the
    container's process runs under SCHED_DEADLINE (policy 6)."""
    bundle.config["linux"].setdefault("resources", {})["cpu"] = {"cpus": f"0-{os.cpu_count() - 1}"}
    bundle.config["process"]["scheduler"] = DEADLINE
    bundle.set_args("cat", "/proc/self/stat")
    out = runtime("run", "-b", str(bundle.path), runtime.new_id()).stdout
    assert stat_fields(out)[38] == "6", out     # field 41: policy


@pytest.mark.skipif(_cpu_cgroup("probe") is None, reason="no real-time group scheduling on this host")
def test_sched_fifo_gets_its_realtime_runtime_from_the_config(runtime, bundle):
    """With RT group scheduling, SCHED_FIFO needs real-time time in the
    container's cpu cgroup: linux.resources.cpu.realtimeRuntime is written
    before the init sets its policy, as runc does. Before: pyrun wrote it
    after, and the same config failed with EPERM."""
    bundle.config["linux"].setdefault("resources", {})["cpu"] = {"realtimeRuntime": 10000,
                                                                 "realtimePeriod": 1000000}
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 10}
    bundle.set_args("cat", "/proc/self/stat")
    out = runtime("run", "-b", str(bundle.path), runtime.new_id()).stdout
    assert (stat_fields(out)[38], stat_fields(out)[37]) == ("1", "10"), out


@pytest.mark.parametrize("sched,field", [
    ({"policy": "SCHED_FIFO", "priority": 0}, "process.scheduler.priority"),
    ({"policy": "SCHED_OTHER", "priority": 3}, "process.scheduler.priority"),
    ({"policy": "SCHED_BATCH", "runtime": 1000}, "process.scheduler"),
])
def test_bad_scheduler_is_one_line_naming_the_field(pyrun, bundle, tmp_path, sched, field):
    bundle.config["process"]["scheduler"] = sched
    line = refused(pyrun, bundle, tmp_path)
    assert field in line, line


# --- I/O priority ------------------------------------------------------------------------

def test_io_priority_best_effort(pyrun, bundle, tmp_path):
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 4}
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pid_file = tmp_path / "pid"
    pyrun("create", "-b", str(bundle.path), "--pid-file", str(pid_file), cid)
    pid = pid_file.read_text().strip()
    pyrun("start", cid)
    eventually(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep",
               what="the init to exec sleep")
    seen = subprocess.run(["ionice", "-p", pid], capture_output=True, text=True, check=True).stdout
    pyrun("delete", "--force", cid)
    assert seen.strip() == "best-effort: prio 4"


def test_io_priority_idle_seen_inside(pyrun, bundle):
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    out = run_out(pyrun, bundle, "ionice")
    assert out.strip() == "idle"


def test_io_priority_without_priority_is_level_0(pyrun, bundle):
    """ioPriority with a class only: runc reads the level as 0 (the upstream
    schema requires only `class`; runc v1.3 ioprio.bats execs such a process).
    Before: "process.ioPriority.priority: is required"."""
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE"}
    out = run_out(pyrun, bundle, "ionice")
    assert out.strip() == "best-effort: prio 0"


# --- memory policy -----------------------------------------------------------------------

def _numa_policy(numa_maps: str) -> set[str]:
    return {line.split()[1] for line in numa_maps.splitlines() if line.strip()}


@pytest.mark.skipif(not Path("/proc/self/numa_maps").exists(), reason="no NUMA support")
@pytest.mark.parametrize("policy,shown", [
    ({"mode": "MPOL_BIND", "nodes": "0"}, "bind:0"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0"}, "prefer:0"),
    ({"mode": "MPOL_LOCAL"}, "local"),
])
def test_memory_policy_is_the_process_policy(pyrun, bundle, policy, shown):
    """numa_maps shows the task's policy on every mapping without one of its own."""
    bundle.config["linux"]["memoryPolicy"] = policy
    out = run_out(pyrun, bundle, "cat", "/proc/self/numa_maps")
    assert _numa_policy(out) == {shown}, out


@pytest.mark.skipif(not Path("/sys/devices/system/node/node0").exists(), reason="no NUMA nodes listed")
def test_memory_policy_on_missing_node_is_one_line(pyrun, bundle, tmp_path):
    if Path("/sys/devices/system/node/node7").exists():
        pytest.skip("this host has a node 7")
    bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "7"}
    line = refused(pyrun, bundle, tmp_path)
    assert "linux.memoryPolicy" in line and "7" in line


# runc v1.4.3 memorypolicy.bats' refusals: its specconv (mode, nodes, flags) and config
# validation (node count) at create, before anything exists. (policy, field, runc's words)
MEMORY_POLICY_REFUSALS = [
    ({}, "linux.memoryPolicy.mode", 'invalid memory policy mode ""'),
    ({"mode": "INTERLEAVE", "nodes": "0"}, "linux.memoryPolicy.mode", 'invalid memory policy mode "INTERLEAVE"'),
    ({"nodes": "0-7"}, "linux.memoryPolicy.mode", 'invalid memory policy mode ""'),
    ({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES", "badflag"]},
     "linux.memoryPolicy.flags[1]", 'invalid memory policy flag "badflag"'),
    ({"mode": "MPOL_DEFAULT", "nodes": "0-7"}, "linux.memoryPolicy.nodes",
     "memory policy mode requires 0 nodes but got 8"),
    ({"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes", "memory policy mode requires at least one node but got 0"),
    ({"mode": "MPOL_BIND", "nodes": "0-9876543210", "flags": []}, "linux.memoryPolicy.nodes",
     'invalid memory policy nodes "0-9876543210": strconv.ParseUint: parsing "9876543210": value out of range'),
    ({"mode": "MPOL_BIND", "nodes": "0-1024"}, "linux.memoryPolicy.nodes",
     'invalid memory policy nodes "0-1024": values larger than 1023 are not supported'),
    ({"mode": "MPOL_BIND", "nodes": "3-1"}, "linux.memoryPolicy.nodes",
     'invalid memory policy nodes "3-1": invalid range: 3-1'),
]


@pytest.mark.parametrize("policy,field,words", MEMORY_POLICY_REFUSALS,
                         ids=["empty", "unknown-mode", "missing-mode", "unknown-flag", "default-with-nodes",
                              "bind-without-nodes", "node-beyond-32-bits", "node-1024", "reversed-range"])
def test_memory_policy_refused_in_runcs_words(runtime, bundle, policy, field, words):
    """runc v1.4.3 memorypolicy.bats ("empty memory policy", "with non-existing
    mode", "with invalid flag", "with missing mode", "calls syscall with invalid
    arguments", "bind way too large a node number"): exit 1 and runc's words,
    which pyrun prefixes with the field. Most of these the schema refuses too:
    its generic message ("'mode' is a required property") gave way to runc's
    (spec/load.py WORDED_CHECKS). Before: the schema's words, or pyrun's own
    ("node 9876543210 is out of range")."""
    bundle.config["linux"]["memoryPolicy"] = policy
    bundle.set_args("true")
    cid = runtime.new_id()
    res = runtime("run", "-b", str(bundle.path), cid, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1, res
    msg = one_json_error(res)
    where = f"{field}: " if runtime.name == "pyrun" else ""
    assert msg == f"{runtime.program} run failed: {where}{words}", msg
    assert not (runtime.root / cid).exists()


# --- netDevices --------------------------------------------------------------------------

def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    """A host veth pair, down, with an address on the first end (never routed:
    the host end stays down, and the address only matters inside the container)."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"prt{tag}a", f"prt{tag}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.254.77.1/30", "dev", a], check=True)
        subprocess.run(["ip", "addr", "add", "fd00:254:77::1/64", "dev", a, "nodad"], check=True)
        yield a, b
    finally:
        for name in (a, b):
            subprocess.run(["ip", "link", "del", "dev", name], capture_output=True)


def _wait_gone(name: str, timeout: float = 10.0) -> bool:
    """A namespace is freed by a kernel worker, a moment after its last process."""
    return eventually(lambda: not _link_exists(name), timeout, f"{name} to go", interval=0.05)


def test_net_device_is_moved_renamed_addressed_and_up(pyrun, bundle, tmp_path, veth):
    host_end, peer = veth
    bundle.config["linux"]["netDevices"] = {host_end: {"name": "eth9"}}
    bundle.set_args("sh", "-c", "ip -o link show eth9; ip -o addr show dev eth9 scope global")
    cid = pyrun.new_id()
    out_path = tmp_path / "out"
    with open(out_path, "w") as out:
        pyrun("create", "-b", str(bundle.path), cid, stdout=out)
    assert not _link_exists(host_end)      # gone from the host while the container exists
    assert _link_exists(peer)
    pyrun("start", cid)
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    pyrun("delete", cid)
    lines = out_path.read_text().splitlines()
    link = lines[0]
    assert ": eth9" in link and "UP" in link.split("<", 1)[1].split(">")[0].split(","), link
    addrs = " ".join(lines[1:])
    assert "inet 10.254.77.1/30" in addrs and "inet6 fd00:254:77::1/64" in addrs, lines
    # the namespace is gone: the moved veth was destroyed, taking its peer along
    assert _wait_gone(peer)
    assert not _link_exists(host_end) and not _link_exists("eth9")


def test_net_device_keeps_its_name_without_one(pyrun, bundle, veth):
    host_end, _peer = veth
    bundle.config["linux"]["netDevices"] = {host_end: {}}
    out = run_out(pyrun, bundle, "ip", "-o", "addr", "show", "dev", host_end)
    assert "inet 10.254.77.1/30" in out


def test_net_device_name_template(pyrun, bundle, veth):
    host_end, _peer = veth
    bundle.config["linux"]["netDevices"] = {host_end: {"name": "ctr%d"}}
    out = run_out(pyrun, bundle, "ip", "-o", "addr", "show", "dev", "ctr0")
    assert "inet 10.254.77.1/30" in out


def test_net_device_name_taken_in_container_is_one_line(pyrun, bundle, tmp_path, veth):
    host_end, _peer = veth
    bundle.config["linux"]["netDevices"] = {host_end: {"name": "lo"}}
    line = refused(pyrun, bundle, tmp_path)
    assert "linux.netDevices" in line and host_end in line and "already exists" in line
    assert _link_exists(host_end)          # checked before the move: still on the host


def test_net_devices_without_network_namespace_is_one_line(pyrun, bundle, tmp_path, veth):
    host_end, _peer = veth
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "network"]
    bundle.config["linux"]["netDevices"] = {host_end: {"name": "eth9"}}
    line = refused(pyrun, bundle, tmp_path)
    assert "linux.netDevices" in line and "network namespace" in line
    assert _link_exists(host_end) and not _link_exists("eth9")     # the host's device untouched


def test_missing_net_device_is_one_line(pyrun, bundle, tmp_path):
    bundle.config["linux"]["netDevices"] = {"prtnosuch0": {}}
    line = refused(pyrun, bundle, tmp_path)
    assert "linux.netDevices" in line and "prtnosuch0" in line
