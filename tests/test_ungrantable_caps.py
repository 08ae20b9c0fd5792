"""Capabilities that cannot be had are dropped with a warning, never fatal
(config.md: MUST warn, SHOULD NOT fail; runc warns and runs), at create and
at every exec.

This machine lacks CAP_SYS_RESOURCE in its bounding set (as many CI sandboxes
do), which is what a `--privileged` container meets there. Expected values
come from the test's own /proc/self/status, never from pyrun.
"""
from __future__ import annotations

import json

import pytest

from conftest import status_fields

ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
SYS_RESOURCE = 1 << 24
KILL, NET_BIND_SERVICE, AUDIT_WRITE = 1 << 5, 1 << 10, 1 << 29
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def host_bounding() -> int:
    with open("/proc/self/status") as f:
        return int(status_fields(f.read())["CapBnd"], 16)


@pytest.fixture
def lacking_sys_resource() -> int:
    """This host's bounding set, which must lack CAP_SYS_RESOURCE."""
    bnd = host_bounding()
    if bnd & SYS_RESOURCE:
        pytest.skip("this host can grant CAP_SYS_RESOURCE")
    return bnd


def caps_of(text: str) -> dict[str, int]:
    st = status_fields(text)
    return {k: int(st[k], 16) for k in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")}


def privileged(bundle, sets=SETS) -> None:
    """Docker's and podman's --privileged: every capability the runtime knows."""
    bundle.config["process"]["capabilities"] = {k: list(ALL_CAPS) for k in sets}
    bundle.write()


def test_ambient_without_inheritable_warns_and_runs(pyrun, bundle):
    """runc 1.1's own `runc spec` caps plus an ambient list (no inheritable):
    the kernel refuses to raise them. Before: `switch user: prctl: operation
    not permitted` and no container. runc warns and runs."""
    three = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle.config["process"]["capabilities"] = {
        "bounding": three, "effective": three, "permitted": three, "ambient": three}
    bundle.set_args("cat", "/proc/self/status")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    want = AUDIT_WRITE | KILL | NET_BIND_SERVICE
    assert caps_of(res.stdout) == {"CapBnd": want, "CapEff": want, "CapPrm": want, "CapInh": 0, "CapAmb": 0}
    for name in three:
        assert f"can't raise ambient capability {name}" in res.stderr, res.stderr


def test_privileged_run_drops_what_the_host_cannot_grant(pyrun, bundle, lacking_sys_resource):
    privileged(bundle)
    bundle.set_args("cat", "/proc/self/status")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    bnd = lacking_sys_resource
    assert caps_of(res.stdout) == {"CapBnd": bnd, "CapEff": bnd, "CapPrm": bnd, "CapInh": bnd, "CapAmb": bnd}
    assert "ignoring capabilities this process cannot grant: CAP_SYS_RESOURCE" in res.stderr


@pytest.mark.parametrize("sets", [("bounding", "effective", "permitted"), SETS],
                         ids=["docker", "all-sets"])
def test_exec_with_a_privileged_process_file(pyrun, bundle, tmp_path, lacking_sys_resource, sets):
    """`docker exec` into a --privileged container hands pyrun a process.json
    with every capability. Before: `capset: operation not permitted` on a
    host lacking CAP_SYS_RESOURCE, for every exec."""
    privileged(bundle, sets)
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    process = dict(bundle.config["process"], args=["cat", "/proc/self/status"], terminal=False)
    (tmp_path / "process.json").write_text(json.dumps(process))
    res = pyrun("exec", "--process", str(tmp_path / "process.json"), cid)
    bnd = lacking_sys_resource
    has = {k: (bnd if k in sets else 0) for k in SETS}
    assert caps_of(res.stdout) == {"CapBnd": has["bounding"], "CapEff": has["effective"],
                                   "CapPrm": has["permitted"], "CapInh": has["inheritable"],
                                   "CapAmb": has["ambient"]}
    assert "CAP_SYS_RESOURCE" in res.stderr
    # and the container's own process (from state.json's config), as plain `exec` gives it
    res = pyrun("exec", cid, "cat", "/proc/self/status")
    assert caps_of(res.stdout)["CapEff"] == bnd
    pyrun("delete", "--force", cid)


def test_exec_cap_flag_the_host_cannot_grant(pyrun, bundle):
    """`exec --cap CAP_SYS_RESOURCE` where the host lacks it: dropped with a
    warning, the process runs with the container's capabilities."""
    if host_bounding() & SYS_RESOURCE:
        pytest.skip("this host can grant CAP_SYS_RESOURCE")
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    res = pyrun("exec", "--cap", "CAP_SYS_RESOURCE", cid, "cat", "/proc/self/status")
    assert not caps_of(res.stdout)["CapEff"] & SYS_RESOURCE
    assert "ignoring capabilities this process cannot grant: CAP_SYS_RESOURCE" in res.stderr
    pyrun("delete", "--force", cid)
