"""config-linux.md: namespaces, user namespace mappings, devices, cgroups, seccomp,
masked and readonly paths, sysctl, and the rest of the Linux section."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Bundle, Runtime, base_config, fail_create, host_ns, run_check

spec = pytest.mark.spec

INVALID = ("configExtensibility", "Runtimes MUST generate an error when invalid or unsupported values")
APPLIED = ("runtimeCreate", "All of the properties configured in config.json except for process MUST be applied")
NS_FILE = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
           "user": "user", "cgroup": "cgroup", "time": "time"}
USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _userns(bundle: Bundle) -> None:
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = USERNS_MAP
    linux["gidMappings"] = USERNS_MAP
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/sys"]


def _sleeper(runtime: Runtime, bundle: Bundle) -> tuple[str, int]:
    bundle.set_args("sleep", "60")
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid)
    return cid, runtime.state(cid)["pid"]


# --- default filesystems -------------------------------------------------------------

@spec("configLinuxDefaultFilesystems", "The following filesystems SHOULD be made available")
def test_default_filesystems(runtime: Runtime, bundle: Bundle) -> None:
    info = run_check(runtime, bundle)
    types = {m["target"]: m["fstype"] for m in info["mounts"]}
    assert (types.get("/proc"), types.get("/sys"), types.get("/dev/pts"), types.get("/dev/shm")) == \
        ("proc", "sysfs", "devpts", "tmpfs")


# --- namespaces ------------------------------------------------------------------------

@spec("configLinuxNamespaces", "The following namespace types SHOULD be supported")
@spec("configLinuxNamespaces", "If path is not specified, the runtime MUST create a new container namespace")
@spec("configLinuxNamespaces", "the container MUST inherit the runtime namespace of that type")
def test_new_and_inherited_namespaces(runtime: Runtime, bundle: Bundle) -> None:
    """Every type new (inode differs from ours) in one container; none in another (same)."""
    _userns(bundle)
    bundle.config["linux"]["namespaces"] = [{"type": t} for t in NS_FILE if t != "time"]
    os.chown(bundle.rootfs, 100000, 100000)
    info = run_check(runtime, bundle)
    shared = [kind for kind, f in NS_FILE.items() if kind != "time" and info["namespaces"][f] == host_ns(f)]
    assert shared == [], f"no new namespace: {shared}"


@spec("configLinuxNamespaces", "The following namespace types SHOULD be supported")
@spec("configLinuxNamespaces", "If path is not specified, the runtime MUST create a new container namespace")
def test_new_time_namespace(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    info = run_check(runtime, bundle)
    assert info["namespaces"]["time"] != host_ns("time")


@spec("configLinuxNamespaces", "the container MUST inherit the runtime namespace of that type")
def test_unlisted_namespaces_are_inherited(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["namespaces"] = [{"type": "mount"}]
    bundle.config.pop("hostname", None)
    info = run_check(runtime, bundle)
    for f in ("net", "ipc", "uts", "user", "cgroup", "time", "pid"):
        assert info["namespaces"][f] == host_ns(f), f"{f}: not the runtime's namespace"
    assert info["namespaces"]["mnt"] != host_ns("mnt")


@spec("configLinuxNamespaces", "The runtime MUST place the container process in the namespace associated with that path")
def test_join_namespaces_by_path(runtime: Runtime, bundle: Bundle, rootfs_template: Path) -> None:
    cid, pid = _sleeper(runtime, bundle)
    other = {f: os.stat(f"/proc/{pid}/ns/{f}").st_ino for f in ("net", "ipc", "uts")}
    bundle.config["linux"]["namespaces"] = [
        {"type": "mount"}, {"type": "pid"},
        {"type": "network", "path": f"/proc/{pid}/ns/net"},
        {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
        {"type": "uts", "path": f"/proc/{pid}/ns/uts"}]
    bundle.config.pop("hostname", None)
    info = run_check(runtime, bundle)
    runtime("delete", "--force", cid)
    for f, ino in other.items():
        assert info["namespaces"][f] == ino, f"{f}: not the namespace at the path"


@spec("configLinuxNamespaces", "The runtime MUST generate an error if path is not associated with a namespace of type type")
def test_namespace_path_of_wrong_type_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["namespaces"] = [
        {"type": "mount"}, {"type": "pid"}, {"type": "uts"},
        {"type": "network", "path": "/proc/self/ns/uts"}]
    fail_create(runtime, bundle)


@spec("configLinuxNamespaces", "The runtime MUST generate an error if path is not associated with a namespace of type type")
def test_namespace_path_not_a_namespace_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["namespaces"] = [
        {"type": "mount"}, {"type": "pid"}, {"type": "uts"},
        {"type": "network", "path": "/etc/hostname"}]
    fail_create(runtime, bundle)


@spec("configLinuxNamespaces", "This value MUST be an absolute path in the runtime mount namespace")
def test_relative_namespace_path_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    cwd = os.getcwd()
    os.chdir("/")
    try:
        bundle.config["linux"]["namespaces"] = [
            {"type": "mount"}, {"type": "pid"}, {"type": "uts"},
            {"type": "network", "path": "proc/self/ns/net"}]
        fail_create(runtime, bundle)
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("kind", ["pid", "network", "mount", "uts"])
@spec("configLinuxNamespaces", "If a namespaces field contains duplicated namespaces with same type")
def test_duplicate_namespace_type_is_refused(runtime: Runtime, bundle: Bundle, kind: str) -> None:
    bundle.config["linux"]["namespaces"].append({"type": kind})
    res = fail_create(runtime, bundle)
    assert res.errors


# --- user namespace --------------------------------------------------------------------

@spec("configLinuxUserNamespaceMappings", "SHOULD NOT modify the ownership of referenced filesystems")
def test_user_namespace_leaves_ownership(runtime: Runtime, bundle: Bundle) -> None:
    _userns(bundle)
    os.chown(bundle.rootfs, 100000, 100000)
    before = {p: (p.lstat().st_uid, p.lstat().st_gid) for p in
              [bundle.rootfs / "bin" / "busybox", bundle.rootfs / "etc" / "passwd", bundle.rootfs / "tmp"]}
    info = run_check(runtime, bundle)
    assert info["status"]["Uid"].split()[0] == "0"
    after = {p: (p.lstat().st_uid, p.lstat().st_gid) for p in before}
    assert after == before


# --- devices ---------------------------------------------------------------------------

DEFAULT_DEVICES = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
                   "/dev/random": (1, 8), "/dev/urandom": (1, 9), "/dev/tty": (5, 0)}


@spec("configLinuxDefaultDevices", "the runtime MUST also supply")
def test_default_devices(runtime: Runtime, bundle: Bundle) -> None:
    args = [a for d in [*DEFAULT_DEVICES, "/dev/ptmx"] for a in ("--stat", d)]
    args += ["--run", "rw", "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo ok"]
    info = run_check(runtime, bundle, *args)
    for path, (major, minor) in DEFAULT_DEVICES.items():
        p = info["paths"][path]
        assert p["exists"] and p["type"] == "character special file", path
        assert (p["major"], p["minor"]) == (major, minor), path
    ptmx = info["paths"]["/dev/ptmx"]
    assert ptmx["exists"] and (ptmx["link"] == "pts/ptmx" or (ptmx["major"], ptmx["minor"]) == (5, 2))
    assert info["runs"]["rw"]["out"].split() == ["4", "ok"]


@spec("configLinuxDevices", "lists devices that MUST be available in the container")
def test_configured_devices(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/oci-char", "type": "c", "major": 1, "minor": 200, "fileMode": 0o640,
         "uid": 12, "gid": 34},
        {"path": "/dev/oci-block", "type": "b", "major": 7, "minor": 250, "fileMode": 0o600,
         "uid": 0, "gid": 0},
        {"path": "/dev/sub/oci-fifo", "type": "p", "fileMode": 0o620, "uid": 5, "gid": 6}]
    info = run_check(runtime, bundle, "--stat", "/dev/oci-char", "--stat", "/dev/oci-block",
                     "--stat", "/dev/sub/oci-fifo")
    c, b, p = (info["paths"][x] for x in ("/dev/oci-char", "/dev/oci-block", "/dev/sub/oci-fifo"))
    assert (c["type"], c["major"], c["minor"], c["perm"], c["uid"], c["gid"]) == \
        ("character special file", 1, 200, "640", 12, 34)
    assert (b["type"], b["major"], b["minor"], b["perm"], b["uid"], b["gid"]) == \
        ("block special file", 7, 250, "600", 0, 0)
    assert (p["type"], p["perm"], p["uid"], p["gid"]) == ("fifo", "620", 5, 6)


@spec("configLinuxDevices", "If a file already exists at path that does not match the requested device")
def test_device_over_mismatching_file_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    """/etc/passwd (a regular file in the rootfs) asked to be a char device."""
    bundle.config["linux"]["devices"] = [
        {"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]
    fail_create(runtime, bundle)


@spec("configLinuxDeviceAllowedlist", "The runtime MUST apply entries in the listed order")
def test_device_rules_in_listed_order(runtime: Runtime, bundle: Bundle) -> None:
    """c 1:200 has no driver: an allowed open fails with ENXIO, a denied one with EPERM."""
    bundle.config["linux"]["devices"] = [{"path": "/dev/oci-x", "type": "c", "major": 1,
                                          "minor": 200, "fileMode": 0o666}]
    bundle.config["linux"]["resources"]["devices"] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 200, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 200, "access": "r"}]
    info = run_check(runtime, bundle, "--run", "r", "cat /dev/oci-x", "--run", "w", "echo > /dev/oci-x")
    assert "Operation not permitted" in info["runs"]["r"]["out"], info["runs"]
    assert "No such device" in info["runs"]["w"]["out"], info["runs"]


@spec("configLinuxDeviceAllowedlist", "The runtime MUST apply entries in the listed order")
def test_device_rules_later_allow_wins(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["devices"] = [{"path": "/dev/oci-x", "type": "c", "major": 1,
                                          "minor": 200, "fileMode": 0o666}]
    bundle.config["linux"]["resources"]["devices"] = [
        {"allow": False, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 200, "access": "r"},
        {"allow": True, "type": "c", "major": 1, "minor": 200, "access": "rwm"}]
    info = run_check(runtime, bundle, "--run", "r", "cat /dev/oci-x")
    assert "No such device" in info["runs"]["r"]["out"], info["runs"]


# --- cgroups ----------------------------------------------------------------------------

def _own_cgroups(info: dict) -> dict[str, str]:
    return {line.split(":", 2)[1]: line.split(":", 2)[2] for line in info["cgroup"].splitlines()}


@spec("configLinuxCgroupsPath", "In the case of an absolute path (starting with /), the runtime MUST take the path to be relative to the cgroups mount point")
@spec("configLinuxCgroupsPath", "the runtime MUST consistently attach to the same place")
def test_absolute_cgroups_path(runtime: Runtime, bundle: Bundle) -> None:
    from conftest import ID_PREFIX
    path = f"/{ID_PREFIX}abs/inner"
    bundle.config["linux"]["cgroupsPath"] = path
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "cgroup"]
    seen = []
    for _ in range(2):
        info = run_check(runtime, bundle)
        cg = _own_cgroups(info)
        seen.append(cg)
        for ctrl in ("pids", "devices", "freezer"):
            assert cg[ctrl] == path, (ctrl, cg)
    assert seen[0] == seen[1]
    _rmdirs(path)


def _rmdirs(path: str) -> None:
    """The parent directory a runtime may leave (it did not create the container there)."""
    for top in Path("/sys/fs/cgroup").iterdir():
        for d in (top / path.lstrip("/"), (top / path.lstrip("/")).parent):
            try:
                d.rmdir()
            except OSError:
                pass


@spec("configLinuxCgroupsPath", "The value of cgroupsPath MUST be either an absolute path or a relative path")
def test_relative_cgroups_path(runtime: Runtime, bundle: Bundle) -> None:
    """A relative path lands below the runtime's own cgroup (here: ours) in each hierarchy."""
    from conftest import ID_PREFIX
    rel = f"{ID_PREFIX}rel/inner"
    bundle.config["linux"]["cgroupsPath"] = rel
    info = run_check(runtime, bundle)
    with open("/proc/self/cgroup") as f:
        ours = {line.split(":", 2)[1]: line.rstrip("\n").split(":", 2)[2] for line in f}
    cg = _own_cgroups(info)
    for ctrl in ("pids", "devices"):
        assert cg[ctrl] == ours[ctrl].rstrip("/") + "/" + rel, (ctrl, cg[ctrl])
    for ctrl, base in ours.items():
        _rmdirs(base.rstrip("/") + "/" + rel)


@spec("configLinuxCgroupsPath", "Runtimes MAY consider certain cgroupsPath values to be invalid, and MUST generate an error")
def test_escaping_cgroups_path_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    """/../x climbs out of each controller's hierarchy into the cgroup tmpfs above it: a
    runtime must refuse it (an error) or keep it inside the hierarchy, never mkdir there."""
    from conftest import ID_PREFIX
    name = f"{ID_PREFIX}escape"
    bundle.config["linux"]["cgroupsPath"] = f"/../{name}"
    bundle.write()
    res = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=False)
    outside = Path("/sys/fs/cgroup") / name
    escaped = outside.exists()
    if escaped:
        outside.rmdir()
    _rmdirs(f"/{name}")
    assert not escaped, f"{outside} was created outside every cgroup hierarchy"
    # either outcome the spec allows, named: runc 1.1.5 and pyrun both run it inside
    outcome = "ran" if res.rc == 0 else "refused with an error" if res.errors else "failed silently"
    assert outcome in ("ran", "refused with an error"), res.stderr


@spec("configLinuxCgroupsPath", "Runtimes SHOULD NOT change the ownership of container cgroups when cgroups v1 is in use")
@spec("configLinuxCgroupsPath", "SHOULD NOT change the ownership of a container cgroup unless it will also create a new cgroup namespace")
def test_cgroup_ownership_unchanged(runtime: Runtime, bundle: Bundle) -> None:
    _userns(bundle)
    os.chown(bundle.rootfs, 100000, 100000)
    cid, pid = _sleeper(runtime, bundle)
    owners = set()
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrl, path = line.rstrip("\n").split(":", 2)
            base = "/sys/fs/cgroup/unified" if ctrl == "" else f"/sys/fs/cgroup/{ctrl.replace('name=', '')}"
            d = Path(base + path)
            if d.is_dir() and path not in ("", "/"):
                owners.add((str(d), d.stat().st_uid))
    runtime("delete", "--force", cid)
    assert owners and all(uid == 0 for _, uid in owners), owners


@spec("configLinuxUnified", "The runtime MUST generate an error when the configuration refers to a cgroup controller that is not present")
def test_unified_unknown_controller_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["resources"]["unified"] = {"nosuchcontroller.max": "1"}
    fail_create(runtime, bundle)


# --- sysctl, masked and readonly paths, propagation ---------------------------------------

@spec(*APPLIED)
def test_sysctl(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    info = run_check(runtime, bundle, "--sysctl", "net.ipv4.ip_forward", "--sysctl", "kernel.shmmni")
    assert info["sysctls"] == {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}


@spec(*APPLIED)
def test_masked_paths(runtime: Runtime, bundle: Bundle) -> None:
    """A file becomes /dev/null, a directory an empty read-only tmpfs; a missing path is skipped."""
    (bundle.rootfs / "root" / "secret").write_text("secret")
    bundle.config["linux"]["maskedPaths"] = ["/proc/cpuinfo", "/root", "/etc/passwd",
                                             "/no/such/path"]
    info = run_check(runtime, bundle, "--stat", "/proc/cpuinfo", "--read", "/etc/passwd",
                     "--read", "/root/secret", "--write", "/root")
    cpu = info["paths"]["/proc/cpuinfo"]
    assert (cpu["type"], cpu["major"], cpu["minor"]) == ("character special file", 1, 3)
    assert info["files"]["/etc/passwd"] == ""
    assert info["files"]["/root/secret"] is None and info["writable"]["/root"] is False


@spec(*APPLIED)
def test_readonly_paths(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["readonlyPaths"] = ["/proc/sys", "/tmp", "/no/such/path"]
    info = run_check(runtime, bundle, "--write", "/tmp", "--write", "/proc/sys/kernel/hostname")
    assert info["writable"] == {"/tmp": False, "/proc/sys/kernel/hostname": False}
    tmp = [m for m in info["mounts"] if m["target"] == "/tmp"][-1]
    assert tmp["options"].split(",")[0] == "ro"


@spec("configLinuxMaskedPaths", "The values MUST be absolute paths in the container namespace")
def test_relative_masked_path_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["maskedPaths"] = ["proc/kcore"]
    fail_create(runtime, bundle)


@spec("configLinuxReadonlyPaths", "The values MUST be absolute paths in the container namespace")
def test_relative_readonly_path_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["readonlyPaths"] = ["proc/sys"]
    fail_create(runtime, bundle)


@pytest.mark.parametrize("prop,shows", [("private", "")])
@spec(*APPLIED)
def test_rootfs_propagation(runtime: Runtime, bundle: Bundle, prop: str, shows: str) -> None:
    bundle.config["linux"]["rootfsPropagation"] = prop
    info = run_check(runtime, bundle)
    root = [m for m in info["mounts"] if m["target"] == "/"][-1]
    if shows:
        assert shows in root["optional"], root
    else:
        assert "shared:" not in root["optional"] and "master:" not in root["optional"], root


# --- seccomp ----------------------------------------------------------------------------

def _seccomp(bundle: Bundle, **kw) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}
    profile.update(kw)
    bundle.config["linux"]["seccomp"] = profile


@spec(*APPLIED)
def test_seccomp_filter_applies(runtime: Runtime, bundle: Bundle) -> None:
    _seccomp(bundle, syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                "errnoRet": 1}])
    info = run_check(runtime, bundle, "--run", "mk", "mkdir /tmp/x")
    assert info["status"]["Seccomp"] == "2"
    assert "Operation not permitted" in info["runs"]["mk"]["out"]


@pytest.mark.parametrize("where", ["default", "syscall"])
@spec("configLinuxSeccomp", "When the action doesn't support an errno, the runtime MUST print and error and fail", nth=1)
@spec("configLinuxSeccomp", "When the action doesn't support an errno, the runtime MUST print and error and fail", nth=2)
def test_errno_with_an_action_without_errno_is_refused(runtime: Runtime, bundle: Bundle,
                                                       where: str) -> None:
    if where == "default":
        _seccomp(bundle, defaultAction="SCMP_ACT_ALLOW", defaultErrnoRet=1)
    else:
        _seccomp(bundle, syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}])
    fail_create(runtime, bundle)


@spec("configLinuxSeccomp", "names MUST contain at least one entry")
def test_seccomp_rule_without_names_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    _seccomp(bundle, syscalls=[{"names": [], "action": "SCMP_ACT_ERRNO"}])
    fail_create(runtime, bundle)


@spec("configLinuxSeccomp", "This field MUST NOT be set if listenerPath is not set")
def test_listener_metadata_without_path_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    _seccomp(bundle, listenerMetadata="meta",
             syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])
    fail_create(runtime, bundle)


@spec("configLinuxSeccomp", "If sending to this socket fails, the runtime MUST generate an error")
def test_unreachable_listener_is_an_error(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    _seccomp(bundle, listenerPath=str(tmp_path / "nobody-listens.sock"),
             syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])
    fail_create(runtime, bundle)


@spec("configLinuxSeccomp", "This socket MUST use AF_UNIX domain and SOCK_STREAM type")
@spec("configLinuxSeccomp", "The runtime MUST send exactly one container process state per connection")
@spec("configLinuxSeccomp", "The connection MUST NOT be reused and it MUST be closed after sending")
@spec("containerprocessstate", "MUST send the container process state over the UNIX socket as regular payload")
@spec("containerprocessstate", "the file descriptors MUST be sent only in the first call")
def test_seccomp_listener_receives_state_and_fd(runtime: Runtime, bundle: Bundle,
                                                tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(10)
    _seccomp(bundle, listenerPath=path, listenerMetadata="conformance-meta",
             syscalls=[{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_NOTIFY"}])
    bundle.set_args("sleep", "30")
    cid = runtime.new_id()
    proc = subprocess.Popen([runtime.path, "--root", str(runtime.root), "create", "--bundle",
                             str(bundle.path), cid], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fds: list[int] = []
    try:
        conn, _ = srv.accept()
        conn.settimeout(10)
        payload = b""
        first = True
        while True:
            data, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
            for level, kind, raw in anc:
                assert first, "file descriptors sent after the first sendmsg"
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += list(memoryview(raw).cast("i"))
            first = False
            if not data:
                break           # closed after one state: not reused
            payload += data
        conn.close()
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
        srv.settimeout(0.3)
        with pytest.raises(socket.timeout):
            srv.accept()        # exactly one connection
        msg = json.loads(payload)
        assert msg["fds"] == ["seccompFd"] and len(fds) == 1
        assert msg["metadata"] == "conformance-meta"
        assert msg["state"]["id"] == cid and msg["pid"] == runtime.state(cid)["pid"]
        assert os.readlink(f"/proc/self/fd/{fds[0]}") == "anon_inode:seccomp notify"
    finally:
        for fd in fds:
            os.close(fd)
        srv.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        runtime("delete", "--force", cid, check=False)


# --- intelRdt ----------------------------------------------------------------------------

@spec("configLinuxIntelRdt", "If no mounted resctrl pseudo-filesystem is available in the runtime mount namespace")
def test_intel_rdt_without_resctrl_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    with open("/proc/self/mountinfo") as f:
        if " resctrl " in f.read():
            pytest.skip("this host has resctrl mounted")
    bundle.config["linux"]["intelRdt"] = {"closID": "oci-conformance", "l3CacheSchema": "L3:0=ff"}
    fail_create(runtime, bundle)


# --- time namespace ------------------------------------------------------------------------

@spec(*APPLIED)
def test_time_offsets(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}
    info = run_check(runtime, bundle, "--read", "/proc/uptime")
    assert float(info["files"]["/proc/uptime"].split()[0]) >= 86400 * 365
    assert time.monotonic() < 86400 * 365


# --- network devices ---------------------------------------------------------------------
# The runtime runs in a network namespace of the test's own (unshare --net), where a
# veth pair and its address live: the host's network is never touched.

def _netdev_run(runtime: Runtime, bundle: Bundle, net_devices: dict, *check: str) -> tuple[subprocess.CompletedProcess, str]:
    bundle.config["linux"]["netDevices"] = net_devices
    bundle.check_args(*check)
    cid = runtime.new_id()
    script = f"""
ip link add ocdummy0 type veth peer name ocpeer0
ip addr add 10.123.0.7/24 dev ocdummy0
rc=0
{runtime.path} --root {runtime.root} --log-format json run --bundle {bundle.path} {cid} || rc=$?
echo "@@after $rc"
ip -o link show
"""
    proc = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    before, _, after = proc.stdout.partition("@@after")
    return proc, before + "\n@@after" + after


@spec("configLinuxNetworkDevices", "A set of network devices that MUST be made available in the container")
@spec("configLinuxNetworkDevices", "The runtime MUST preserve existing network interface attributes")
@spec("configLinuxNetworkDevices", "MUST set the network device state to \"up\"")
@spec("configLinuxNetworkDevices", "MUST NOT attempt to move the interface out of the namespace before deletion")
@spec("configLinuxNetworkDevices", "MUST NOT actively manage the interface's lifecycle")
def test_net_device_moved_in(runtime: Runtime, bundle: Bundle) -> None:
    proc, out = _netdev_run(runtime, bundle, {"ocdummy0": {"name": "eth7"}},
                            "--run", "links", "ip -o link show", "--run", "addrs", "ip -o addr show")
    info_text, _, after = out.partition("@@after")
    assert after.split()[0] == "0", proc.stderr
    info = json.loads(info_text)
    links, addrs = info["runs"]["links"]["out"], info["runs"]["addrs"]["out"]
    eth7 = [ln for ln in links.splitlines() if ": eth7:" in ln or ": eth7@" in ln]
    assert eth7 and ",UP" in eth7[0], links
    assert "10.123.0.7/24" in addrs and "eth7" in addrs, addrs
    assert len(links.splitlines()) == 2, f"the runtime added interfaces of its own: {links}"
    # after delete the interface went with the container's namespace, not back to ours
    assert "ocdummy0" not in after and "eth7" not in after, after


@spec("configLinuxNetworkDevices", "The runtime MUST check if moving the network interface to the container namespace is possible")
def test_missing_net_device_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    proc, out = _netdev_run(runtime, bundle, {"ocnosuch9": {"name": "eth7"}})
    assert out.partition("@@after")[2].split()[0] != "0"
    assert '"level":"error"' in proc.stderr.replace(" ", ""), proc.stderr


@spec("configLinuxNetworkDevices", "If a network device with the specified name already exists in the container namespace")
def test_net_device_name_taken_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    proc, out = _netdev_run(runtime, bundle, {"ocdummy0": {"name": "lo"}})
    assert out.partition("@@after")[2].split()[0] != "0"
    assert '"level":"error"' in proc.stderr.replace(" ", ""), proc.stderr


@spec("configLinuxNetworkDevices", "In that case, the runtime MUST allow the move")
def test_net_device_name_template(runtime: Runtime, bundle: Bundle) -> None:
    proc, out = _netdev_run(runtime, bundle, {"ocdummy0": {"name": "lo%d"}},
                            "--run", "links", "ip -o link show")
    info_text, _, after = out.partition("@@after")
    assert after.split()[0] == "0", proc.stderr
    links = json.loads(info_text)["runs"]["links"]["out"]
    assert any(": lo0:" in ln or ": lo0@" in ln for ln in links.splitlines()), links


# --- cgroup resources, read from the host side of the container's cgroup -------------

def _created_cgroup_file(runtime: Runtime, bundle: Bundle, controller: str, name: str) -> str:
    """`create` the bundle, read <name> in the container's <controller> cgroup (v1, or the
    unified one on pure v2), delete; the file's content."""
    bundle.set_args("true")
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid)
    try:
        pid = runtime.state(cid)["pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            own = {line.split(":", 2)[1]: line.split(":", 2)[2].strip() for line in f}
        key = next((k for k in own if controller in k.split(",")), "")
        top = Path("/sys/fs/cgroup")        # pure v2: the one hierarchy
        if key:                             # v1 / hybrid: the controller's own mount
            top = next(p for p in top.iterdir() if p.is_dir() and controller in p.name.split(","))
        return (top / own[key].lstrip("/") / name).read_text().strip()
    finally:
        runtime("delete", "--force", cid, check=False)


@spec("configLinuxCPU", "quota (int64, OPTIONAL)")
def test_cpu_quota_is_applied(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["resources"] = {"cpu": {"quota": 20000, "period": 100000}}
    assert _created_cgroup_file(runtime, bundle, "cpu", "cpu.cfs_quota_us") == "20000"
    assert _created_cgroup_file(runtime, bundle, "cpu", "cpu.cfs_period_us") == "100000"


@spec("configLinuxCPU", "burst (uint64, OPTIONAL)")
def test_cpu_burst_is_applied(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["resources"] = {"cpu": {"quota": 20000, "period": 100000, "burst": 10000}}
    assert _created_cgroup_file(runtime, bundle, "cpu", "cpu.cfs_burst_us") == "10000"


@spec("configLinuxPIDS", "0 is a valid limit value")
def test_pids_limit_zero_is_a_limit(runtime: Runtime, bundle: Bundle) -> None:
    """pids.limit 0 limits (no new task may start), it does not mean unlimited."""
    bundle.config["linux"]["resources"] = {"pids": {"limit": 0}}
    assert _created_cgroup_file(runtime, bundle, "pids", "pids.max") == "0"


@spec("configLinuxUnified", "If the conversion is not possible the runtime MUST generate an error")
def test_unified_on_a_host_without_cgroup_v2_controllers_is_an_error(runtime: Runtime, bundle: Bundle) -> None:
    """On a v1 or hybrid host the `unified` keys cannot be written or converted."""
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("pure cgroup v2 host: unified applies there")
    bundle.config["linux"]["resources"] = {"unified": {"pids.max": "10"}}
    fail_create(runtime, bundle)


def _pure_v2() -> None:
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("needs a pure cgroup v2 host (runs in the qemu VM: tests/test_cgroup_v2_vm.py)")


@spec("configLinuxUnified", "MUST ensure that the needed cgroup controllers are enabled")
def test_unified_enables_the_controllers_it_needs(runtime: Runtime, bundle: Bundle) -> None:
    _pure_v2()
    bundle.config["linux"]["resources"] = {"unified": {"pids.max": "10"}}
    assert _created_cgroup_file(runtime, bundle, "pids", "pids.max") == "10"


@spec("configLinuxUnified", "Configuration unknown to the runtime MUST still be written")
def test_unified_keys_unknown_to_the_runtime_are_written(runtime: Runtime, bundle: Bundle) -> None:
    _pure_v2()
    bundle.config["linux"]["resources"] = {"unified": {"memory.high": "52428800"}}
    assert _created_cgroup_file(runtime, bundle, "memory", "memory.high") == "52428800"


# --- cgroup ownership (pure v2 only: the VM runs these) --------------------------------

OWNERSHIP = "configLinuxCgroupsPath"
DELEGATE_FALLBACK = {"cgroup.procs", "cgroup.subtree_control", "cgroup.threads"}


def _delegation(bundle: Bundle, mount: str | None = "rw", cgroupns: bool = True,
                cgroups_path: str | None = None) -> None:
    """A user namespace (container root = host 100000) with, unless told
    otherwise, its own cgroup namespace and a read-write cgroup mount."""
    linux = bundle.config["linux"]
    linux["namespaces"] += [{"type": "user"}] + ([{"type": "cgroup"}] if cgroupns else [])
    linux["uidMappings"] = USERNS_MAP
    linux["gidMappings"] = USERNS_MAP
    if mount:
        options = ["nosuid", "noexec", "nodev", "relatime"] + (["ro"] if mount == "ro" else [])
        bundle.config["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup",
                                        "source": "cgroup", "options": options})
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path


def _v2_owners(runtime: Runtime, bundle: Bundle) -> tuple[Path, dict[str, int]]:
    """`create` the bundle; the container's cgroup (from the kernel) and the uid
    owning it (".") and each file in it; delete."""
    cid, pid = _sleeper(runtime, bundle)
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            path = next(ln.rstrip("\n").split(":", 2)[2] for ln in f if ln.startswith("0::"))
        d = Path("/sys/fs/cgroup") / path.lstrip("/")
        owners = {".": d.stat().st_uid}
        owners.update({p.name: p.stat().st_uid for p in d.iterdir() if p.is_file()})
        return d, owners
    finally:
        runtime("delete", "--force", cid, check=False)


def _kernel_delegate_list() -> set[str]:
    try:
        return set(Path("/sys/kernel/cgroup/delegate").read_text().split())
    except FileNotFoundError:
        return DELEGATE_FALLBACK


@spec(OWNERSHIP, "Runtimes SHOULD change the cgroup ownership if and only if")
def test_v2_cgroup_owner_changes_iff_the_cgroup_mount_is_read_write(runtime: Runtime, bundle: Bundle) -> None:
    _pure_v2()
    _delegation(bundle, mount="rw")
    _, owners = _v2_owners(runtime, bundle)
    assert owners["."] == 100000 and owners["cgroup.procs"] == 100000, owners
    bundle.config = base_config(["true"])
    _delegation(bundle, mount="ro")
    _, owners = _v2_owners(runtime, bundle)
    assert set(owners.values()) == {0}, owners


@spec(OWNERSHIP, "If the configuration does not specify such a mount, the runtime SHOULD NOT")
def test_v2_cgroup_owner_unchanged_without_a_cgroup_mount(runtime: Runtime, bundle: Bundle) -> None:
    _pure_v2()
    _delegation(bundle, mount=None)
    _, owners = _v2_owners(runtime, bundle)
    assert set(owners.values()) == {0}, owners


@spec(OWNERSHIP, "SHOULD NOT change the ownership of a container cgroup unless it will also create a new cgroup namespace")
def test_v2_cgroup_owner_unchanged_in_the_runtimes_cgroup_namespace(runtime: Runtime, bundle: Bundle) -> None:
    _pure_v2()
    _delegation(bundle, cgroupns=False)
    _, owners = _v2_owners(runtime, bundle)
    assert set(owners.values()) == {0}, owners


@spec(OWNERSHIP, "A runtime that changes the cgroup ownership SHOULD only change the ownership")
@spec(OWNERSHIP, "The runtime SHOULD NOT change the ownership of any other files")
def test_v2_cgroup_owner_changes_only_the_listed_files(runtime: Runtime, bundle: Bundle) -> None:
    _pure_v2()
    _delegation(bundle)
    d, owners = _v2_owners(runtime, bundle)
    listed = _kernel_delegate_list()
    wrong = {n: u for n, u in owners.items() if u != (100000 if n == "." or n in listed else 0)}
    assert not wrong, (d, wrong)
    assert DELEGATE_FALLBACK <= owners.keys() and len(owners) > len(listed) + 1, owners


@pytest.fixture
def busy_parent(runtime: Runtime) -> Iterator[str]:
    """A cgroup that can give its children no controller (it and a child of it
    hold a process: the kernel refuses every cgroup.subtree_control write), so
    a container below it lacks the memory.* files the kernel lists as
    delegatable.  Removed, with its processes, before the runtime's leak check."""
    _pure_v2()
    from conftest import ID_PREFIX
    name = f"{ID_PREFIX}busy-{os.getpid()}"
    parent = Path("/sys/fs/cgroup") / name
    (parent / "busy").mkdir(parents=True)
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    try:
        (parent / "busy" / "cgroup.procs").write_text(str(sleepers[0].pid))
        (parent / "cgroup.procs").write_text(str(sleepers[1].pid))
        yield name
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        for d in (parent / "busy", parent):
            try:
                d.rmdir()
            except OSError:
                pass


@spec(OWNERSHIP, "Runtimes MUST NOT fail in this scenario")
def test_v2_cgroup_owner_listed_files_missing_do_not_fail(runtime: Runtime, bundle: Bundle,
                                                          busy_parent: str) -> None:
    _pure_v2()
    from conftest import ID_PREFIX
    _delegation(bundle, cgroups_path=f"/{busy_parent}/{ID_PREFIX}owned")
    d, owners = _v2_owners(runtime, bundle)      # create must succeed
    missing = {n for n in _kernel_delegate_list() if n not in owners}
    assert missing, f"every listed file exists in {d}: the set-up did not remove any"
    present = _kernel_delegate_list() & owners.keys()
    assert owners["."] == 100000 and all(owners[n] == 100000 for n in present), owners
