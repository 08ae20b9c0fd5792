"""`pyrun audit` on real running containers, weakened one way each.

Each weakened container must be flagged with the finding its weakness
deserves, and `--strict` must exit 1 for the high-risk ones; the default
container (`pyrun spec`'s template, plus a seccomp profile) must have no
high-risk finding, and a runc container is audited through `--root`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import Bundle, Pyrun

ALL_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
            "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_MKNOD"]
SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["kexec_load", "init_module"], "action": "SCMP_ACT_ERRNO"}]}


def _run(pyrun: Pyrun, bundle: Bundle, **kw: Any) -> str:
    bundle.set_args("sleep", "600")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid, **kw)
    pyrun.wait_status(cid, "running")
    return cid


def _audit(pyrun: Pyrun, cid: str, *flags: str, check: bool = True) -> tuple[dict[str, Any], int]:
    r = pyrun("audit", "--format", "json", *flags, cid, check=check)
    return json.loads(r.stdout), r.returncode


def _findings(report: dict[str, Any], severity: str) -> list[str]:
    return [f["finding"] for f in report["findings"] if f["severity"] == severity]


def test_default_container_has_no_high_risk_finding(pyrun: Pyrun, bundle: Bundle) -> None:
    bundle.config["linux"]["seccomp"] = SECCOMP
    cid = _run(pyrun, bundle)
    report, code = _audit(pyrun, cid, "--strict")
    assert code == 0, report["findings"]
    assert _findings(report, "high") == []
    assert all(report["namespaces"][t]["own"] for t in ("pid", "network", "mount", "ipc", "uts"))
    init = report["processes"][0]
    assert init["pid"] == pyrun.state(cid)["pid"]
    assert sorted(init["capabilities"]["effective"]) == sorted(bundle.config["process"]["capabilities"]["effective"])
    assert init["seccomp"] == {"mode": "filter", "filters": 1}
    assert "seccomp unconfined" not in _findings(report, "medium")
    assert all(report["paths"]["masked"].values()) and all(report["paths"]["readonly"].values())
    pyrun("delete", "-f", cid)


@pytest.mark.parametrize("ns", ["pid", "network"])
def test_host_namespace_is_flagged(pyrun: Pyrun, bundle: Bundle, ns: str) -> None:
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != ns]
    if ns == "network":     # sysfs needs a network namespace of its own
        bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/sys"]
    cid = _run(pyrun, bundle)
    report, code = _audit(pyrun, cid, "--strict", check=False)
    assert f"shares the host {ns} namespace" in _findings(report, "high")
    assert code == 1
    pyrun("delete", "-f", cid)


def test_privileged_capabilities_are_flagged(pyrun: Pyrun, bundle: Bundle) -> None:
    caps = bundle.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = list(ALL_CAPS)
    cid = _run(pyrun, bundle)
    report, code = _audit(pyrun, cid, "--strict", check=False)
    high = _findings(report, "high")
    for cap in ("CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"):
        assert f"{cap} in the effective set" in high
    assert code == 1
    pyrun("delete", "-f", cid)


def test_writable_host_bind_is_flagged(pyrun: Pyrun, bundle: Bundle, tmp_path: Path) -> None:
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    ro_dir = tmp_path / "rodir"
    ro_dir.mkdir()
    bundle.config["mounts"] += [
        {"destination": "/mnt/rw", "type": "bind", "source": str(host_dir), "options": ["rbind", "rw"]},
        {"destination": "/mnt/ro", "type": "bind", "source": str(ro_dir), "options": ["rbind", "ro"]}]
    cid = _run(pyrun, bundle)
    report, code = _audit(pyrun, cid, "--strict", check=False)
    by_target = {m["target"]: m for m in report["mounts"]}
    assert by_target["/mnt/rw"]["writable"] is True and by_target["/mnt/rw"]["host_path"].endswith("/hostdir")
    assert by_target["/mnt/ro"]["writable"] is False
    high = [f for f in report["findings"] if f["severity"] == "high"]
    assert [f["detail"].rsplit(" at ", 1)[1] for f in high if f["finding"].startswith("host path mounted writable")] == ["/mnt/rw"]
    assert code == 1
    pyrun("delete", "-f", cid)


def test_missing_masked_and_readonly_paths_are_flagged(pyrun: Pyrun, bundle: Bundle) -> None:
    bundle.config["linux"]["maskedPaths"] = []
    bundle.config["linux"]["readonlyPaths"] = []
    cid = _run(pyrun, bundle)
    report, code = _audit(pyrun, cid, "--strict", check=False)
    unmasked = [f["detail"] for f in report["findings"] if f["finding"] == "path not masked"]
    assert "/proc/keys" in unmasked and "/proc/timer_list" in unmasked
    not_ro = [f["detail"] for f in report["findings"] if f["finding"] == "path not read-only" and f["severity"] == "high"]
    # the kernel's files (this host's kernel has no /proc/sysrq-trigger, nor /proc/kcore)
    assert sorted(not_ro) == [p for p in ("/proc/sys", "/proc/sysrq-trigger") if os.path.exists(p)]
    assert code == 1
    pyrun("delete", "-f", cid)


def test_seccomp_unconfined_is_flagged(pyrun: Pyrun, bundle: Bundle) -> None:
    bundle.config["linux"].pop("seccomp", None)
    cid = _run(pyrun, bundle)
    report, _code = _audit(pyrun, cid)
    assert "seccomp unconfined" in _findings(report, "medium")
    assert report["processes"][0]["seccomp"] == {"mode": "disabled", "filters": 0}
    pyrun("delete", "-f", cid)


def test_preserved_host_directory_fd_is_flagged(pyrun: Pyrun, bundle: Bundle, tmp_path: Path) -> None:
    """A host directory handed in with --preserve-fds: openat(fd, "..") walks the host."""
    fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        bundle.set_args("sleep", "600")
        cid = pyrun.new_id()
        # fd 3 of pyrun is the host directory (dup2 in the child, before exec)
        pyrun("run", "-d", "--preserve-fds", "1", "-b", str(bundle.path), cid,
              pass_fds=(fd, 3), preexec_fn=lambda: os.dup2(fd, 3))
    finally:
        os.close(fd)
    pyrun.wait_status(cid, "running")
    report, code = _audit(pyrun, cid, "--strict", check=False)
    assert [(f["fd"], f["target"]) for f in report["fds"] if f["fd"] == "fd/3"] == [("fd/3", str(tmp_path))]
    assert "fd on a file outside the container's mounts" in _findings(report, "high")
    assert code == 1
    pyrun("delete", "-f", cid)


def test_audits_a_runc_container(pyrun: Pyrun, bundle: Bundle, tmp_path: Path) -> None:
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("no runc on this host")
    root = tmp_path / "runc-root"
    bundle.set_args("sleep", "600")
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != "pid"]
    bundle.write()
    cid = "audit-runc-" + os.urandom(4).hex()
    subprocess.run([runc, "--root", str(root), "run", "-d", "-b", str(bundle.path), cid],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=30)
    try:
        pid = json.loads(subprocess.run([runc, "--root", str(root), "state", cid], capture_output=True,
                                        text=True, check=True).stdout)["pid"]
        out = subprocess.run([str(pyrun.command[0]), "--root", str(root), "audit", "--format", "json", "--strict", cid],
                             capture_output=True, text=True, timeout=30)
        report = json.loads(out.stdout)
        assert report["pid"] == pid
        assert "shares the host pid namespace" in _findings(report, "high")
        assert out.returncode == 1
    finally:
        subprocess.run([runc, "--root", str(root), "delete", "-f", cid], check=False, timeout=30)


def test_audit_of_a_missing_container(pyrun: Pyrun) -> None:
    r = pyrun("audit", "nope", check=False)
    assert r.returncode == 1
    assert "container nope does not exist" in r.stderr


def test_block_device_the_cgroup_allows_is_flagged(pyrun: Pyrun, bundle: Bundle) -> None:
    """Two loop device nodes in /dev; the device cgroup allows only loop1."""
    linux = bundle.config["linux"]
    linux["devices"] = [{"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0},
                        {"path": "/dev/loop1", "type": "b", "major": 7, "minor": 1}]
    linux.setdefault("resources", {})["devices"] = [{"allow": False, "access": "rwm"},
                                                    {"allow": True, "type": "b", "major": 7, "minor": 1, "access": "rw"}]
    cid = _run(pyrun, bundle)
    report, code = _audit(pyrun, cid, "--strict", check=False)
    nodes = {n["path"]: n["allowed"] for n in report["devices"] if n["type"] == "b"}
    assert nodes == {"/dev/loop0": False, "/dev/loop1": True}
    blocks = [f["detail"] for f in report["findings"] if f["finding"] == "block device node the container can open"]
    assert blocks == ["/dev/loop1 7:1"]
    assert code == 1
    pyrun("delete", "-f", cid)
