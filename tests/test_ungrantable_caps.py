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


def test_unknown_capability_names_warn_and_run(pyrun, bundle):
    """A name no kernel interface maps (config.md: MUST be logged as a warning,
    SHOULD NOT fail): runc warns 'ignoring unknown or unavailable capabilities'
    and runs (runc v1.2+ capabilities.bats 'run with unknown capability').
    Before: the schema refused 'UNKNOWN_CAP' and create failed."""
    three = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle.config["process"]["capabilities"]["bounding"] = three + ["CAP_UNKNOWN", "UNKNOWN_CAP"]
    bundle.set_args("cat", "/proc/self/status")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert caps_of(res.stdout)["CapBnd"] == AUDIT_WRITE | KILL | NET_BIND_SERVICE
    warned = [line for line in res.stderr.splitlines() if "level=warning" in line]
    assert warned == [next(line for line in warned
                           if 'msg="ignoring unknown or unavailable capabilities: [CAP_UNKNOWN UNKNOWN_CAP]"' in line)]


def test_exec_cap_also_raises_ambient_when_the_config_has_inheritable(pyrun, bundle):
    """runc 1.2+: with an inheritable set in config.json, `exec --cap X` adds X
    to the ambient set too (runc v1.3 capabilities.bats 'exec --cap [ambient is
    set from spec]'); bit values from capabilities(7): CHOWN 0, KILL 5, SYSLOG 34."""
    chown, syslog = 1 << 0, 1 << 34
    bundle.config["process"]["capabilities"] = {
        "inheritable": ["CAP_CHOWN", "CAP_SYSLOG"], "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "effective": ["CAP_KILL"], "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SYSLOG"],
        "ambient": ["CAP_CHOWN"]}
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        plain = caps_of(pyrun("exec", cid, "cat", "/proc/self/status").stdout)
        with_cap = caps_of(pyrun("exec", "--cap", "CAP_SYSLOG", cid, "cat", "/proc/self/status").stdout)
    finally:
        pyrun("delete", "--force", cid)
    assert plain == {"CapInh": chown | syslog, "CapPrm": KILL | chown, "CapEff": KILL | chown,
                     "CapBnd": KILL | chown | syslog, "CapAmb": chown}
    assert with_cap == {"CapInh": chown | syslog, "CapPrm": KILL | chown | syslog,
                        "CapEff": KILL | chown | syslog, "CapBnd": KILL | chown | syslog,
                        "CapAmb": chown | syslog}


def test_user_without_gid_runs_as_gid_0(pyrun, bundle):
    """`process.user` with a uid only: runc reads the gid as 0 (the upstream
    schema does not require it; runc v1.2+ capabilities.bats writes such a
    config). Before: "process.user: 'gid' is a required property"."""
    bundle.config["process"]["user"] = {"uid": 1000}
    bundle.set_args("cat", "/proc/self/status")
    st = status_fields(pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout)
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["0"] * 4
