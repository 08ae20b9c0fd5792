"""Docker and containerd's CRI on a systemd + cgroup v2 host: pyrun (and runc
beside it) as their runtime with the systemd cgroup driver.

Only where systemd is pid 1: tests/test_cgroup_v2_vm.py runs this module in
its systemd boot. dockerd uses its default driver there (native.cgroupdriver=
systemd: cgroupsPath `system.slice:docker:<id>`, the shim passes
--systemd-cgroup); containerd's CRI has `SystemdCgroup = true` for both
handlers (`<pod slice>:cri-containerd:<id>`). Every scenario runs with pyrun
and with Debian's runc. What is asserted is what systemd shows for the unit
(`systemctl show`), what the container reads in /sys/fs/cgroup, and what the
engine reports: never pyrun's own output.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PYRUN
from dockerd import Dockerd, missing_reason, running_dockerd

RUNC = "/usr/sbin/runc"
RUNTIMES = {"pyrun": str(PYRUN), "runc2": RUNC}     # "runc" is the name Docker keeps for its own
MiB = 1 << 20
BOTH = pytest.mark.parametrize("rt", ["pyrun", "runc2"])

pytestmark = [pytest.mark.docker,
              pytest.mark.skipif(not os.path.isdir("/run/systemd/system"),
                                 reason="needs systemd as pid 1 (tests/test_cgroup_v2_vm.py boots one)")]


def show(unit: str, *props: str) -> dict[str, str]:
    """`systemctl show` of the unit: what systemd itself holds for it."""
    out = subprocess.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)],
                         check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def gone(unit: str, cgroup: str) -> bool:
    return show(unit, "LoadState")["LoadState"] == "not-found" and not os.path.exists(cgroup)


# --- Docker --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dockerd(rootfs_template: Path) -> Iterator[Dockerd]:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    # vfs: the guest's /tmp is on overlayfs, where overlay2 cannot stack
    # and a longer start: under TCG on a busy host dockerd has taken over a minute to answer
    with running_dockerd(RUNTIMES, rootfs=rootfs_template, cgroup_driver="systemd", start_timeout=300,
                         extra_args=("--storage-driver", "vfs")) as daemon:
        yield daemon


class Running:
    """One `docker run -d` container and its scope."""

    def __init__(self, daemon: Dockerd, rt: str, *args: str) -> None:
        self.daemon = daemon
        self.name = f"pyrun-sd-{uuid.uuid4().hex[:8]}"
        self.id = daemon.docker("run", "-d", "--name", self.name, "--runtime", rt, *args, timeout=120).stdout.strip()
        self.unit = f"docker-{self.id}.scope"
        self.cgroup = f"/sys/fs/cgroup/system.slice/{self.unit}"

    def inside(self, *files: str) -> list[str]:
        """The container's own view of its cgroup files, read by `docker exec`."""
        return self.daemon.docker("exec", self.name, "cat", *files).stdout.split()

    def inspect(self, fmt: str) -> str:
        return self.daemon.docker("inspect", "--format", fmt, self.name).stdout.strip()

    def remove(self) -> None:
        self.daemon.docker("rm", "-f", self.name, check=False)


@BOTH
def test_docker_container_is_a_scope_with_its_limits(dockerd: Dockerd, rt: str) -> None:
    """run --memory/--pids-limit/--cpus: a docker-<id>.scope in system.slice whose
    properties and whose files inside the container carry the limits; update
    changes the unit; pause freezes the scope; exec joins it; stats and top see
    it; rm leaves neither unit nor cgroup. (One container for all: each one
    more costs tens of seconds under TCG.)"""
    c = Running(dockerd, rt, "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5",
                dockerd.image, "sleep", "1000")
    try:
        pid = c.inspect("{{.State.Pid}}")
        assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::/system.slice/{c.unit}\n"
        assert show(c.unit, "ActiveState", "Delegate", "MemoryMax", "TasksMax", "CPUQuotaPerSecUSec") == {
            "ActiveState": "active", "Delegate": "yes", "MemoryMax": str(64 * MiB),
            "TasksMax": "50", "CPUQuotaPerSecUSec": "500ms"}
        # exec joins the scope (a cgroup namespace rooted there): its cat is counted beside sleep
        assert c.inside("/proc/self/cgroup", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max",
                        "/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/pids.current") == [
            "0::/", str(64 * MiB), "50", "50000", "100000", "2"]

        dockerd.docker("update", "--memory", "128m", "--memory-swap", "256m", "--pids-limit", "60",
                       "--cpus", "1", c.name)
        assert show(c.unit, "MemoryMax", "MemorySwapMax", "TasksMax", "CPUQuotaPerSecUSec") == {
            "MemoryMax": str(128 * MiB), "MemorySwapMax": str(128 * MiB), "TasksMax": "60",
            "CPUQuotaPerSecUSec": "1s"}
        assert c.inside("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.swap.max",
                        "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cpu.max") == [
            str(128 * MiB), str(128 * MiB), "60", "100000", "100000"]

        dockerd.docker("pause", c.name)
        assert c.inspect("{{.State.Status}}") == "paused"
        assert "frozen 1" in Path(c.cgroup, "cgroup.events").read_text().splitlines()
        dockerd.docker("unpause", c.name)
        assert "frozen 0" in Path(c.cgroup, "cgroup.events").read_text().splitlines()

        stats = dockerd.docker("stats", "--no-stream", "--format", "{{.MemUsage}}|{{.PIDs}}", c.name).stdout
        usage, pids = stats.strip().split("|")
        assert usage.split(" / ")[1] == "128MiB" and pids == "1", stats

        top = dockerd.docker("top", c.name, "-o", "pid,args").stdout.splitlines()
        assert [line.split(None, 1) for line in top[1:]] == [[pid, "sleep 1000"]], top
    finally:
        c.remove()
    assert gone(c.unit, c.cgroup)


def oom_kills(cgroup: str) -> int:
    """The kernel's count of OOM kills in `cgroup` and below (memory.events is hierarchical)."""
    lines = Path(cgroup, "memory.events").read_text().splitlines()
    return int(dict(line.split() for line in lines)["oom_kill"])


@BOTH
def test_docker_oom_hog_is_oom_killed(dockerd: Dockerd, rt: str) -> None:
    """The hog's scope reaches MemoryMax and the kernel kills it: docker reports
    137, and system.slice counts one more OOM kill. (Docker's State.OOMKilled
    comes from the shim's watch of the scope's memory.events racing the exit
    and its scope's removal: it read false once for runc in three boots, so the
    kernel's count is asserted, not the flag.)"""
    name = f"pyrun-sd-{uuid.uuid4().hex[:8]}"
    before = oom_kills("/sys/fs/cgroup/system.slice")
    res = dockerd.docker("run", "--name", name, "--runtime", rt, "--memory", "16m", "--memory-swap", "16m",
                         dockerd.image, "sh", "-c", "x=a; while :; do x=$x$x; done", check=False, timeout=120)
    try:
        assert res.returncode == 137, res
        [info] = json.loads(dockerd.docker("inspect", name).stdout)
        cid = info["Id"]
        assert info["State"]["ExitCode"] == 137, info["State"]
        assert oom_kills("/sys/fs/cgroup/system.slice") == before + 1
    finally:
        dockerd.docker("rm", "-f", name, check=False)
    assert gone(f"docker-{cid}.scope", f"/sys/fs/cgroup/system.slice/docker-{cid}.scope")


# --- containerd's CRI (SystemdCgroup = true), through crictl -----------------------------

@pytest.fixture(scope="module")
def cri(rootfs_template: Path) -> Iterator["Crictl"]:
    from containerd_daemon import CONTAINERD
    from cri_daemon import CriContainerd, new_workdir
    from test_cri import Crictl, _crictl_binary
    if CONTAINERD is None or not os.path.exists("/usr/lib/cni/loopback"):
        pytest.skip("containerd or the CNI loopback plugin not installed")
    binary = _crictl_binary()
    # native snapshots: the guest's /tmp is on overlayfs, where overlay cannot stack
    daemon = CriContainerd(new_workdir(), str(PYRUN), systemd_cgroup=True, snapshotter="native")
    try:
        daemon.start(timeout=300)
        daemon.import_busybox(rootfs_template)
        yield Crictl(binary, daemon)
    finally:
        daemon.stop(binary)
        # the pod slices are the kubelet's to remove (systemd made them for the scopes)
        subprocess.run(["systemctl", "stop", "kubepods.slice"], check=True)


@pytest.mark.parametrize("handler", ["pyrun", "runc"])
def test_cri_container_is_a_scope_in_its_pod_slice(cri, handler: str) -> None:
    """The pod's cgroup parent is a kubelet-style slice; the container lands in
    cri-containerd-<id>.scope under it, with its limits in the unit and inside;
    crictl update changes the unit; removing the pod leaves no scope."""
    from test_cri import Pod, container_pid
    pod = Pod(cri, handler)
    pod_slice = f"kubepods-besteffort-pod{pod.name}.slice"
    pod.config["linux"]["cgroup_parent"] = pod_slice
    slice_dir = f"/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/{pod_slice}"
    pod.run()
    try:
        cid = pod.create("app", "sleep", "1000", linux={"resources": {
            "memory_limit_in_bytes": 64 * MiB, "cpu_period": 100000, "cpu_quota": 50000}})
        unit = f"cri-containerd-{cid}.scope"
        pid = container_pid(cri, cid)
        assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::{slice_dir[len('/sys/fs/cgroup'):]}/{unit}\n"
        sandbox = f"cri-containerd-{pod.id}.scope"      # the pause process has its own scope beside it
        assert sorted(e.name for e in Path(slice_dir).iterdir() if e.is_dir()) == sorted([unit, sandbox])
        assert show(unit, "ActiveState", "Slice", "Delegate", "MemoryMax", "CPUQuotaPerSecUSec") == {
            "ActiveState": "active", "Slice": pod_slice, "Delegate": "yes", "MemoryMax": str(64 * MiB),
            "CPUQuotaPerSecUSec": "500ms"}
        inside = cri("exec", "-s", cid, "cat", "/proc/self/cgroup", "/sys/fs/cgroup/memory.max",
                     "/sys/fs/cgroup/cpu.max").stdout.split()
        assert inside == ["0::/", str(64 * MiB), "50000", "100000"]

        cri("update", "--memory", str(128 * MiB), "--cpu-period", "100000", "--cpu-quota", "25000", cid)
        assert show(unit, "MemoryMax", "CPUQuotaPerSecUSec") == {"MemoryMax": str(128 * MiB),
                                                                 "CPUQuotaPerSecUSec": "250ms"}
        assert Path(slice_dir, unit, "memory.max").read_text() == f"{128 * MiB}\n"
    finally:                   # as the kubelet: stop, remove (the slice is stopped at module end)
        cri("stopp", pod.id, check=False)
        cri("rmp", "-f", pod.id)
    assert gone(unit, f"{slice_dir}/{unit}") and gone(sandbox, f"{slice_dir}/{sandbox}")
