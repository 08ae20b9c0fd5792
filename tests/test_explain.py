"""`pyrun explain` against what `pyrun create` really does, config by config.

For each config of the corpus (runc's `runc spec` template and configs shaped
like Docker's, containerd's CRI sandbox member, podman's, and a user-namespace
one), explain prints its plan, then create runs with PYRUN_TRACE, which makes
every stage record the steps it performed with the actions each performed, and
the two must be equal: same init and stage-1 steps in the same order with the
same actions, same parent steps. Then the container is started and must run.

The expected values asserted besides (limit files, mounts, capabilities) are
the configs' own numbers, read by the test, not by pyrun.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import Bundle, Pyrun

RUNC_143 = Path(__file__).resolve().parents[1] / ".." / "shared" / "upstream" / "runc-1.4.3-amd64.gz"
V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")

DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DENY_SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["kexec_load", "open_by_handle_at", "init_module", "finit_module"],
                              "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                             {"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]}


def _files(bundle: Bundle, *names: str) -> dict[str, str]:
    """Files the way an engine keeps them beside the bundle (hosts, resolv.conf...)."""
    out = {}
    for name in names:
        path = bundle.path / "userdata" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# {name} for the container\n")
        out[name] = str(path)
    return out


def runc_spec(bundle: Bundle, _helper: Any) -> dict[str, Any]:
    """Current runc's `runc spec` template (1.4.3), as a user starts from it."""
    runc = bundle.path / "runc"
    with gzip.open(RUNC_143) as src, open(runc, "wb") as dst:
        shutil.copyfileobj(src, dst)
    runc.chmod(0o755)
    config = _spec_of(str(runc), bundle)
    runc.unlink()
    return config


def runc_115_spec(bundle: Bundle, _helper: Any) -> dict[str, Any]:
    """Debian's runc 1.1.5 template: its ambient caps are not inheritable, so
    they cannot be raised; create warns (as runc does) and the plan says so."""
    return _spec_of("/usr/sbin/runc", bundle)


def _spec_of(runc: str, bundle: Bundle) -> dict[str, Any]:
    subprocess.run([runc, "spec"], cwd=bundle.path / "rootfs", check=True)
    config = json.loads((bundle.path / "rootfs" / "config.json").read_text())
    (bundle.path / "rootfs" / "config.json").unlink()
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    return config


def docker_like(bundle: Bundle, _helper: Any) -> dict[str, Any]:
    """Docker's shape: 14 default caps, masked/readonly paths, rbind'ed
    /etc files, limits, a seccomp profile, the unprivileged-port sysctl."""
    config = bundle.config
    files = _files(bundle, "hosts", "hostname", "resolv.conf")
    # --cap-add SYS_RESOURCE: a sandbox may not grant it (create warns and drops it)
    config["process"]["capabilities"] = {k: DOCKER_CAPS + ["CAP_SYS_RESOURCE"] for k in ("bounding", "effective", "permitted")}
    config["process"]["args"] = ["sh", "-c", "cat /etc/hostname >/dev/null"]
    config["process"]["oomScoreAdj"] = 0
    config["mounts"] += [{"destination": f"/etc/{n}", "type": "bind", "source": p, "options": ["rbind", "rprivate"]}
                         for n, p in files.items()]
    linux = config["linux"]
    linux["maskedPaths"], linux["readonlyPaths"] = list(MASKED), list(READONLY)
    linux["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "0"}
    linux["resources"] = {"memory": {"limit": 268435456}, "pids": {"limit": 100}, "cpu": {"shares": 512},
                          "devices": [{"allow": False, "access": "rwm"},
                                      {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}
    linux["seccomp"] = DENY_SECCOMP
    return config


def containerd_like(bundle: Bundle, helper: Callable[[], int]) -> dict[str, Any]:
    """A CRI container: joins its sandbox's network namespace (a pause-like
    process), read-only rootfs, a non-root user with extra groups, no_new_privs,
    seccomp, cpu quota, a cwd the image lacks."""
    config = bundle.config
    sandbox = helper()
    files = _files(bundle, "hosts", "resolv.conf")
    config["process"].update({"user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 1000]},
                              "cwd": "/work/app", "noNewPrivileges": True,
                              "args": ["sh", "-c", "test $(id -u) = 1000"]})
    config["process"]["capabilities"] = {k: list(DOCKER_CAPS) for k in ("bounding", "effective", "permitted")}
    config["root"]["readonly"] = True
    config["mounts"] += [{"destination": f"/etc/{n}", "type": "bind", "source": p, "options": ["rbind", "rprivate", "ro"]}
                         for n, p in files.items()]
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"] + \
        [{"type": "network", "path": f"/proc/{sandbox}/ns/net"}]
    linux["maskedPaths"], linux["readonlyPaths"] = list(MASKED), list(READONLY)
    linux["resources"] = {"cpu": {"quota": 50000, "period": 100000}, "memory": {"limit": 134217728}}
    linux["seccomp"] = DENY_SECCOMP
    return config


def podman_like(bundle: Bundle, _helper: Any) -> dict[str, Any]:
    """podman's shape: rlimits, ping sysctl, umask, every kind of hook."""
    config = bundle.config
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192},
                                    {"type": "RLIMIT_NPROC", "soft": 1024, "hard": 2048}]
    config["process"]["user"]["umask"] = 0o022
    config["process"]["args"] = ["sh", "-c", "test $(ulimit -n) = 4096"]
    config["linux"]["sysctl"] = {"net.ipv4.ping_group_range": "0 0"}
    config["linux"]["resources"] = {"pids": {"limit": 2048}}
    true = {"path": "/bin/true", "args": ["true"]}
    config["hooks"] = {k: [dict(true), {"path": "/bin/sh", "args": ["sh", "-c", "exit 0"], "timeout": 5}]
                       for k in ("prestart", "createRuntime", "createContainer", "startContainer")}
    return config


def userns(bundle: Bundle, _helper: Any) -> dict[str, Any]:
    """A new user namespace: stage 1 asks for maps, devices are bind-mounted."""
    config = bundle.config
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["mounts"] = [m for m in config["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
    return config


def shared_ro_dev(bundle: Bundle, _helper: Any) -> dict[str, Any]:
    """rootfsPropagation shared (the parent mount made private, the root's own
    propagation set last), a read-only /dev tmpfs (remounted read-only in
    finalize rootfs) and a non-root user whose cwd only root may enter."""
    config = bundle.config
    config["linux"]["rootfsPropagation"] = "shared"
    next(m for m in config["mounts"] if m["destination"] == "/dev")["options"].append("ro")
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    config["process"]["cwd"] = "/root"
    config["process"]["args"] = ["sh", "-c", "test $(id -u) = 1000 && ! touch /dev/x"]
    return config


def mount_order(bundle: Bundle, _helper: Any) -> dict[str, Any]:
    """runc 1.2+ mount order: a host tree on /mnt, then two idmapped copies of
    the container's /mnt (the source spelled with the rootfs's host path), which
    the parent clones in the init's mount namespace at the init's request."""
    config = bundle.config
    tree = bundle.path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    os.chown(tree / "f", 1000, 1000)
    maps = [{"containerID": 1000, "hostID": 0, "size": 1}]
    config["mounts"] += [
        {"destination": "/mnt", "type": "bind", "source": str(tree), "options": ["rbind"]},
        *({"destination": dest, "type": "bind", "source": str(bundle.rootfs / "mnt"), "options": ["rbind", "idmap"],
           "uidMappings": maps, "gidMappings": maps} for dest in ("/final", "/again")),
    ]
    config["process"]["args"] = ["sh", "-c", 'test "$(echo $(stat -c %u:%g /mnt/f /final/f /again/f))" = "1000:1000 0:0 0:0"']
    return config


CORPUS = {"runc-spec": runc_spec, "runc-1.1.5-spec": runc_115_spec, "docker": docker_like,
          "containerd": containerd_like, "podman": podman_like, "userns": userns, "shared-ro-dev": shared_ro_dev,
          "mount-order": mount_order}


@pytest.fixture
def sandbox():
    """A pause-like process in a network namespace of its own, as a CRI sandbox."""
    procs: list[subprocess.Popen] = []

    def start() -> int:
        proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        procs.append(proc)
        from waiting import eventually
        eventually(lambda: os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
                   and os.readlink(f"/proc/{proc.pid}/exe").endswith("sleep"), 5, "sandbox netns")
        return proc.pid
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _by_stage(stages: list[dict[str, Any]]) -> dict[str, list[tuple[str, Any]]]:
    return {s["stage"]: [(step["step"], step["actions"]) for step in s["steps"]] for s in stages}


@pytest.mark.parametrize("case", list(CORPUS))
def test_explain_is_what_create_does(pyrun: Pyrun, request: pytest.FixtureRequest, tmp_path: Path,
                                     sandbox, case: str) -> None:
    # the user namespace's root (host uid 200000) must be able to reach the rootfs
    bundle = request.getfixturevalue("open_bundle" if case == "userns" else "bundle")
    config = CORPUS[case](bundle, sandbox)
    bundle.config = config
    bundle.write()
    cid = pyrun.new_id()
    plan = json.loads(pyrun("explain", "--format", "json", "-b", str(bundle.path), cid).stdout)
    # explain created nothing: no state directory, no cgroup directory
    assert not (pyrun.root / cid).exists()
    planned_dirs = next(a["paths"] for s in plan["stages"] if s["stage"] == "parent"
                        for step in s["steps"] if step["step"] == "make cgroup" for a in step["actions"]
                        if a["do"] == "mkdir")
    assert planned_dirs and not any(os.path.exists(d) for d in planned_dirs)

    trace = tmp_path / "trace.jsonl"
    # `run` is create, start, wait and delete: its exit status is the container's
    # own check (id -u, ulimit -n...), so the traced container did run as planned
    ran = pyrun("run", "-b", str(bundle.path), cid, env={**os.environ, "PYRUN_TRACE": str(trace)},
                stdin=subprocess.DEVNULL, check=False)
    assert ran.returncode == 0, ran.stderr
    warned = re.findall(r'level=warning msg="([^"]*)"', ran.stderr)
    assert plan["warnings"] == warned
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    done: dict[str, list[tuple[str, Any]]] = {}
    for r in records:
        done.setdefault(r["stage"], []).append((r["step"], r["actions"]))
    explained = _by_stage(plan["stages"])
    assert done["init"] == explained["init"]
    assert done["stage 1"] == explained["stage 1"]
    assert dict(done["parent"]) == dict(explained["parent"])
    assert [name for name, _ in done["init"]][-3:] == ["report ready", "wait for start", "exec"]
    _check_case(case, config, explained, plan["warnings"])


def _writes(explained: dict[str, list[tuple[str, Any]]]) -> dict[str, str]:
    limits = dict(explained["parent"]).get("write cgroup limits") or []
    return {os.path.basename(a["file"]): a["value"] for a in limits}


def _actions(explained: dict[str, list[tuple[str, Any]]], step: str) -> list[dict[str, Any]]:
    return dict(explained["init"])[step]


def _check_case(case: str, config: dict[str, Any], explained: dict[str, list[tuple[str, Any]]],
                warnings: list[str]) -> None:
    """Plans carry the config's values, converted as the kernel's files want them."""
    mounts = [a for a in _actions(explained, "prepare rootfs") if a["do"] == "mount"]
    assert [m["destination"] for m in mounts] == [m["destination"] for m in config["mounts"]]
    if case == "docker":
        writes = _writes(explained)
        assert writes[("memory.max" if V2 else "memory.limit_in_bytes")] == "268435456"
        assert writes["pids.max"] == "100"
        assert writes[("cpu.weight" if V2 else "cpu.shares")] == ("20" if V2 else "512")
        binds = [m for m in mounts if m["destination"].startswith("/etc/")]
        assert {m["source"] for m in binds} == {m["source"] for m in config["mounts"] if m["destination"].startswith("/etc/")}
        assert all(m["propagation"] == ["rprivate"] and m["kind"] == "bind" for m in binds)
        capset = next(a for a in _actions(explained, "switch user") if a["do"] == "capset")
        grantable = _bounding_of_this_process()
        assert sorted(capset["effective"]) == sorted(c for c in DOCKER_CAPS + ["CAP_SYS_RESOURCE"] if c in grantable)
        assert {a["path"] for a in _actions(explained, "restrict paths") if a["do"] == "mask"} == set(MASKED)
    if case == "runc-1.1.5-spec":
        # ambient without inheritable cannot be raised: create warns and runs (as runc), and explain says so
        ambient = config["process"]["capabilities"]["ambient"]
        assert ambient and not config["process"]["capabilities"].get("inheritable")
        raised = next(a for a in _actions(explained, "switch user") if a["do"] == "raise ambient")
        assert raised["caps"] == []
        assert warnings == [f"can't raise ambient capability {cap}: operation not permitted" for cap in ambient]
    if case == "containerd":
        joined = dict(explained["stage 1"])["join namespaces"]
        assert [(a["type"], a["path"]) for a in joined] == \
            [("network", next(ns["path"] for ns in config["linux"]["namespaces"] if ns["type"] == "network"))]
        assert dict(explained["init"])["set up network"] == []      # not ours: no loopback set-up
        assert _writes(explained)[("cpu.max" if V2 else "cpu.cfs_quota_us")] == ("50000 100000" if V2 else "50000")
        user = {a["do"]: a for a in _actions(explained, "switch user")}
        assert (user["setresuid"]["uid"], user["setresgid"]["gid"], user["setgroups"]["groups"]) == (1000, 1000, [10, 1000])
        assert dict(explained["init"])["load seccomp (no_new_privs off)"] == []
        assert dict(explained["init"])["load seccomp (no_new_privs on)"][0]["defaultAction"] == "SCMP_ACT_ALLOW"
    if case == "podman":
        hooks = dict(explained["parent"])["run prestart and createRuntime hooks"]
        assert [(h["do"], h["order"]) for h in hooks] == [("run prestart hook", 0), ("run prestart hook", 1),
                                                          ("run createRuntime hook", 0), ("run createRuntime hook", 1)]
        assert [a["type"] for a in dict(explained["parent"])["prlimit the init"]] == ["RLIMIT_NOFILE", "RLIMIT_NPROC"]
        assert _actions(explained, "apply sysctls") == [{"do": "write sysctl", "key": "net.ipv4.ping_group_range",
                                                          "value": "0 0", "file": "sys/net/ipv4/ping_group_range"}]
    if case == "shared-ro-dev":
        rootfs = [a["do"] for a in _actions(explained, "prepare rootfs")][:3]
        assert rootfs == ["set propagation of /", "make the rootfs's parent mount private", "bind rootfs on itself"]
        assert [a.get("path") for a in _actions(explained, "finalize rootfs")] == [None, "/dev"]   # the /dev/null reopen first
        assert [a["propagation"] for a in _actions(explained, "set rootfs propagation")] == ["shared"]
        chdirs = [a["path"] for a in _actions(explained, "switch user") if a["do"].startswith("chdir")]
        assert chdirs == ["/root", "/root"]
    if case == "mount-order":
        last = len(config["mounts"]) - 1
        assert [name for name, _ in explained["parent"] if name.startswith("clone")] == \
            [f"clone mounts[{last - 1}]'s source", f"clone mounts[{last}]'s source"]
        assert [m["source"] for m in mounts[-2:]] == ["container:/mnt", "container:/mnt"]
    if case == "userns":
        user = dict(explained["stage 1"])["create user namespace"]
        assert user[1]["uidMappings"] == config["linux"]["uidMappings"]
        devices = next(a for a in _actions(explained, "prepare rootfs") if a["do"] == "create devices")
        assert devices["bind_from_host"] is True


def test_explain_refuses_an_invalid_config(pyrun: Pyrun, bundle: Bundle) -> None:
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]
    bundle.write()
    r = pyrun("explain", "-b", str(bundle.path), check=False)
    assert r.returncode == 1
    assert "RLIMIT_NOPE" in r.stderr and r.stdout == ""


def test_explain_config_flag_and_text(pyrun: Pyrun, bundle: Bundle, tmp_path: Path) -> None:
    other = bundle.path / "other.json"
    bundle.config["hostname"] = "from-other"
    other.write_text(json.dumps(bundle.config))
    r = pyrun("explain", "--config", str(other), "x1")
    assert "sethostname name=from-other" in r.stdout
    assert "\ninit:\n" in r.stdout and "\nstage 1:\n" in r.stdout and "\nparent:\n" in r.stdout


def _bounding_of_this_process() -> set[str]:
    """Capability names in our own bounding set (what create can grant)."""
    names = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
             "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
             "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
             "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
             "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
             "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP"]
    with open("/proc/self/status") as f:
        mask = int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)
    return {name for i, name in enumerate(names) if mask >> i & 1}


@pytest.mark.parametrize("command", ["explain", "audit"])
def test_help_in_the_cli_layout(pyrun: Pyrun, command: str) -> None:
    """runc has neither command: the same sections as create's screen, each flag with words."""
    from pyrun.cli import help as text
    screens = {pyrun(command, "-h").stdout, pyrun("help", command).stdout, pyrun(command, "--help").stdout}
    assert len(screens) == 1
    screen = screens.pop()
    heads = re.findall(r"^([A-Z][A-Z ]+):$", screen, re.M)
    assert heads == ["NAME", "USAGE", "DESCRIPTION", "OPTIONS"]
    assert {f.names[0] for f in text.command_flags(command)} == set(text.COMMANDS[command][3])
    assert f"\n   {command}  " in pyrun("--help").stdout


SPEC_EXAMPLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "oci-runtime-spec" / "config.md"


def _spec_example() -> dict[str, Any]:
    """config.md's "Configuration Schema Example": a complete config, but one
    that asks for AppArmor and SELinux labels, /usr/bin hooks and /dev/sda."""
    text = SPEC_EXAMPLE.read_text().split("## Configuration Schema Example", 1)[1]
    return json.loads(text.split("```json", 1)[1].split("```", 1)[0])


def test_explain_refuses_the_spec_example_as_create_does(pyrun: Pyrun, bundle: Bundle) -> None:
    """Same refusal, same words, same exit code, nothing left behind (the
    conftest leak check): explain validates with create's own checks."""
    bundle.config = _spec_example()
    bundle.write()
    cid = pyrun.new_id()
    explained = pyrun("explain", "-b", str(bundle.path), cid, check=False)
    created = pyrun("create", "-b", str(bundle.path), cid, check=False)
    assert (explained.returncode, explained.stdout) == (created.returncode, "") and created.returncode != 0
    said = re.findall(r'level=error msg="(.*)"$', explained.stderr, re.M)
    assert re.findall(r'level=error msg="(.*)"$', created.stderr, re.M) == ["pyrun create failed: " + said[0]]
    assert not (pyrun.root / cid).exists()
