"""config.md: specification version, root, mounts, process, user, hostname,
annotations, extensibility and valid values (hooks: test_config_hooks.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Bundle, Runtime, fail_create, run_check

spec = pytest.mark.spec

INVALID = ("configExtensibility", "Runtimes MUST generate an error when invalid or unsupported values")


def _mount(info: dict, target: str) -> dict:
    """The top-most mount at `target` (the last one listed there)."""
    found = [m for m in info["mounts"] if m["target"] == target]
    assert found, f"nothing mounted at {target}: {[m['target'] for m in info['mounts']]}"
    return found[-1]


# --- ociVersion ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.0", "v1.0.2", "1.0.2.3", "latest", "01.0.0"])
@spec("configSpecificationVersion", "MUST be in SemVer v2.0.0 format")
@spec(*INVALID)
def test_non_semver_oci_version_is_refused(runtime: Runtime, bundle: Bundle, version: str) -> None:
    bundle.config["ociVersion"] = version
    res = fail_create(runtime, bundle)
    assert any("ociVersion" in e for e in res.errors), res.errors


@pytest.mark.parametrize("version", ["1.0.0", "1.0.2", "1.1.0", "1.2.0", "1.3.0"])
@spec("configSpecificationVersion", "MUST be in SemVer v2.0.0 format")
def test_supported_oci_versions_run(runtime: Runtime, bundle: Bundle, version: str) -> None:
    """Configs of every 1.x release up to the spec version this suite checks run."""
    bundle.config["ociVersion"] = version
    info = run_check(runtime, bundle)
    assert info["pid"] == 1


# --- root ----------------------------------------------------------------------------

@spec("configRoot", "A directory MUST exist at the path declared by the field")
def test_missing_root_directory_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["root"]["path"] = "no-such-rootfs"
    fail_create(runtime, bundle)


@spec("configRoot", "A directory MUST exist at the path declared by the field")
def test_absolute_root_path(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["root"]["path"] = str(bundle.rootfs)
    assert run_check(runtime, bundle)["pid"] == 1


@spec("configRoot", "If true then the root filesystem MUST be read-only inside the container")
@spec("runtimeLifecycle", "The container's runtime environment MUST be created according to the configuration")
def test_readonly_root(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["root"]["readonly"] = True
    info = run_check(runtime, bundle, "--write", "/", "--write", "/bin", "--write", "/dev/shm")
    assert _mount(info, "/")["options"].split(",")[0] == "ro"
    assert info["writable"] == {"/": False, "/bin": False, "/dev/shm": True}


@spec("configRoot", "If true then the root filesystem MUST be read-only inside the container")
def test_writable_root_by_default(runtime: Runtime, bundle: Bundle) -> None:
    del bundle.config["root"]["readonly"]
    info = run_check(runtime, bundle, "--write", "/")
    assert info["writable"]["/"] is True


# --- mounts ------------------------------------------------------------------------------

@spec("configMounts", "The runtime MUST mount entries in the listed order")
def test_mounts_in_listed_order(runtime: Runtime, bundle: Bundle) -> None:
    """Two tmpfs on one destination, then one below it: the last listed is on top."""
    m = bundle.config["mounts"]
    m.append({"destination": "/m", "type": "tmpfs", "source": "first", "options": ["size=1m"]})
    m.append({"destination": "/m", "type": "tmpfs", "source": "second", "options": ["size=2m"]})
    m.append({"destination": "/m/sub", "type": "tmpfs", "source": "third", "options": ["size=3m"]})
    info = run_check(runtime, bundle)
    order = [x["source"] for x in info["mounts"] if x["source"] in ("first", "second", "third")]
    assert order == ["first", "second", "third"]
    assert _mount(info, "/m")["source"] == "second"
    assert _mount(info, "/m/sub")["source"] == "third"


@spec("configMounts", "in which case it MUST be interpreted as relative to \"/\"")
def test_relative_mount_destination_is_relative_to_root(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["mounts"].append({"destination": "rel/dir", "type": "tmpfs", "source": "reltmp",
                                    "options": ["size=1m"]})
    info = run_check(runtime, bundle)
    assert _mount(info, "/rel/dir")["source"] == "reltmp"


@spec("configMounts", "in which case it MUST be interpreted as relative to \"/\"")
def test_relative_destination_with_cwd_elsewhere(runtime: Runtime, bundle: Bundle) -> None:
    """Relative to "/", not to process.cwd."""
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.config["mounts"].append({"destination": "reldir", "type": "tmpfs", "source": "reltmp",
                                    "options": ["size=1m"]})
    info = run_check(runtime, bundle)
    assert _mount(info, "/reldir")["source"] == "reltmp"
    assert not [m for m in info["mounts"] if m["target"] == "/tmp/reldir"]


@spec("configLinuxMountOptions", "Runtimes SHOULD treat unknown options as filesystem-specific ones")
def test_unknown_options_go_to_the_filesystem(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["mounts"].append({"destination": "/fsopt", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["nosuid", "size=2m", "mode=0710", "nr_inodes=99"]})
    info = run_check(runtime, bundle, "--stat", "/fsopt")
    sup = _mount(info, "/fsopt")["super"].split(",")
    assert "size=2048k" in sup and "mode=710" in sup and "nr_inodes=99" in sup
    assert info["paths"]["/fsopt"]["perm"] == "710"


# Per option: options given (the option under test last) and what mountinfo must show.
# per: per-mount options; sup: superblock options.  "recognised" options that the kernel
# does not display must at least not reach tmpfs as data (it refuses unknown ones).
OPTION_CASES = {
    "async": (["sync", "async"], lambda per, sup: "sync" not in sup),
    "sync": (["sync"], lambda per, sup: "sync" in sup),
    "dirsync": (["dirsync"], lambda per, sup: "dirsync" in sup),
    "lazytime": (["lazytime"], lambda per, sup: "lazytime" in sup),
    "nolazytime": (["lazytime", "nolazytime"], lambda per, sup: "lazytime" not in sup),
    "atime": (["noatime", "atime"], lambda per, sup: "noatime" not in per),
    "noatime": (["noatime"], lambda per, sup: "noatime" in per),
    "diratime": (["nodiratime", "diratime"], lambda per, sup: "nodiratime" not in per),
    "nodiratime": (["nodiratime"], lambda per, sup: "nodiratime" in per),
    "relatime": (["relatime"], lambda per, sup: "relatime" in per),
    "norelatime": (["norelatime"], lambda per, sup: "noatime" not in per),
    "strictatime": (["strictatime"], lambda per, sup: "relatime" not in per and "noatime" not in per),
    "nostrictatime": (["strictatime", "nostrictatime"], lambda per, sup: "relatime" in per),
    "dev": (["nodev", "dev"], lambda per, sup: "nodev" not in per),
    "nodev": (["nodev"], lambda per, sup: "nodev" in per),
    "exec": (["noexec", "exec"], lambda per, sup: "noexec" not in per),
    "noexec": (["noexec"], lambda per, sup: "noexec" in per),
    "suid": (["nosuid", "suid"], lambda per, sup: "nosuid" not in per),
    "nosuid": (["nosuid"], lambda per, sup: "nosuid" in per),
    "nosymfollow": (["nosymfollow"], lambda per, sup: "nosymfollow" in per),
    "symfollow": (["nosymfollow", "symfollow"], lambda per, sup: "nosymfollow" not in per),
    "ro": (["ro"], lambda per, sup: per[0] == "ro"),
    "rw": (["ro", "rw"], lambda per, sup: per[0] == "rw"),
    "defaults": (["defaults"], lambda per, sup: per[0] == "rw" and "nosuid" not in per),
    "iversion": (["iversion"], lambda per, sup: per[0] == "rw"),
    "noiversion": (["noiversion"], lambda per, sup: per[0] == "rw"),
    "loud": (["loud"], lambda per, sup: per[0] == "rw"),
    "silent": (["silent"], lambda per, sup: per[0] == "rw"),
}


def _option_params(cases: dict) -> list:
    """Each option case cites its own row of the options table."""
    return [pytest.param(o, marks=pytest.mark.spec("configLinuxMountOptions", f"^{o} | "), id=o)
            for o in sorted(cases)]


@pytest.fixture(scope="module")
def all_options(runtime_path: str, state_root: Path, rootfs_template: Path,
                pytestconfig: pytest.Config):
    """One container with every OPTION_CASES mount (at /opt-<name>): a test uses it
    when the batch ran, else runs its own container, so one refused option cannot
    hide the verdict on the others, and the suite stays quick."""
    mounts = [{"destination": f"/opt-{name}", "type": "tmpfs", "source": "tmpfs", "options": options}
              for name, (options, _) in OPTION_CASES.items()]
    return _run_batch(runtime_path, state_root, rootfs_template, pytestconfig, mounts)


def _run_batch(runtime_path: str, state_root: Path, rootfs_template: Path,
               pytestconfig: pytest.Config, mounts: list[dict]) -> dict | None:
    """Run one checker container with `mounts` added; its report, or None if
    the runtime refused the batch."""
    import shutil
    import tempfile

    from conftest import Runtime as Rt, base_config
    base = Path(tempfile.mkdtemp(prefix="oci-c-bundle-", dir="/tmp"))
    try:
        shutil.copytree(rootfs_template, base / "rootfs", symlinks=True)
        b = Bundle(base, base_config(["true"]))
        b.config["mounts"] += mounts
        rt = Rt(runtime_path, pytestconfig._oci_runtime_name, state_root)
        b.check_args()
        res = rt("run", "--bundle", str(b.path), rt.new_id(), check=False)
        rt.cleanup()
        return json.loads(res.stdout) if res.rc == 0 else None
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("option", _option_params(OPTION_CASES))
@spec("configLinuxMountOptions", "Runtimes MUST/SHOULD/MAY implement the following option strings")
@spec("configLinuxMountOptions", "The \"MUST\" options correspond to mount(8)")
def test_mount_option(runtime: Runtime, bundle: Bundle, option: str, all_options) -> None:
    options, check = OPTION_CASES[option]
    if all_options is not None:
        m = _mount(all_options, f"/opt-{option}")
    else:
        bundle.config["mounts"].append({"destination": "/opt-test", "type": "tmpfs",
                                        "source": "tmpfs", "options": options})
        m = _mount(run_check(runtime, bundle), "/opt-test")
    per, sup = m["options"].split(","), m["super"].split(",")
    assert check(per, sup), f"{options}: per-mount {per}, superblock {sup}"


# --- bind mounts and propagation ------------------------------------------------------

def _host_sys_bind(bundle: Bundle, options: list[str]) -> None:
    """Host /sys (which has submounts, e.g. /sys/fs/cgroup) bound read-only at /hostsys."""
    bundle.config["mounts"].append({"destination": "/hostsys", "type": "bind", "source": "/sys",
                                    "options": options + ["ro"]})


def _submounts(info: dict, top: str) -> list[dict]:
    return [m for m in info["mounts"] if m["target"].startswith(top + "/")]


@pytest.mark.parametrize("option", _option_params({"bind": 0, "rbind": 0}))
@spec("configLinuxMountOptions", "Runtimes MUST/SHOULD/MAY implement the following option strings")
def test_bind_and_rbind(runtime: Runtime, bundle: Bundle, option: str) -> None:
    _host_sys_bind(bundle, [option])
    info = run_check(runtime, bundle, "--stat", "/hostsys/fs/cgroup")
    top = _mount(info, "/hostsys")
    assert top["fstype"] == "sysfs"
    subs = _submounts(info, "/hostsys")
    if option == "rbind":
        assert any(m["target"].startswith("/hostsys/fs/cgroup") for m in subs), "rbind lost submounts"
    else:
        assert not subs, f"bind brought submounts: {[m['target'] for m in subs]}"


PROPAGATION = {
    # option: (check of the top mount's optional fields, recursive?)
    "shared": (lambda opt: "shared:" in opt, False),
    "rshared": (lambda opt: "shared:" in opt, True),
    "private": (lambda opt: "shared:" not in opt and "master:" not in opt, False),
    "rprivate": (lambda opt: "shared:" not in opt and "master:" not in opt, True),
    "slave": (lambda opt: "master:" in opt and "shared:" not in opt, False),
    "rslave": (lambda opt: "master:" in opt and "shared:" not in opt, True),
    "unbindable": (lambda opt: "unbindable" in opt, False),
    "runbindable": (lambda opt: "unbindable" in opt, True),
}


@pytest.mark.parametrize("option", _option_params(PROPAGATION))
@spec("configLinuxMountOptions", "Runtimes MUST/SHOULD/MAY implement the following option strings")
def test_propagation_option(runtime: Runtime, bundle: Bundle, option: str) -> None:
    """A shared tmpfs /p with a submount /p/sub, rbound to /q with the option: /q (and
    for the r* options /q/sub too) shows the asked propagation.  (The host's mounts
    are private here, so a shared source is made inside the container.)"""
    check, recursive = PROPAGATION[option]
    m = bundle.config["mounts"]
    m.append({"destination": "/p", "type": "tmpfs", "source": "ptmp", "options": ["shared"]})
    m.append({"destination": "/p/sub", "type": "tmpfs", "source": "psub", "options": ["size=1m"]})
    m.append({"destination": "/q", "type": "bind", "source": str(bundle.rootfs / "p"),
              "options": ["rbind", option]})
    info = run_check(runtime, bundle)
    assert "shared:" in _mount(info, "/p")["optional"], "the source is not shared"
    top = _mount(info, "/q")
    assert top["source"] == "ptmp"
    assert check(top["optional"]), f"{option}: /q shows {top['optional']!r}"
    if recursive:
        sub = _mount(info, "/q/sub")
        assert check(sub["optional"]), f"{option}: /q/sub shows {sub['optional']!r}"


RECURSIVE_CASES = {
    # option: (options before it, check of each submount's per-mount options)
    "rro": ([], lambda per: per[0] == "ro"),
    "rrw": (["rro"], lambda per: per[0] == "rw"),
    "rnosuid": ([], lambda per: "nosuid" in per),
    "rsuid": (["rnosuid"], lambda per: "nosuid" not in per),
    "rdev": (["rnodev"], lambda per: "nodev" not in per),
    "rnoexec": ([], lambda per: "noexec" in per),
    "rexec": (["rnoexec"], lambda per: "noexec" not in per),
    "rnoatime": ([], lambda per: "noatime" in per),
    "ratime": (["rnoatime"], lambda per: "noatime" not in per),     # atime: the kernel default
    "rnodiratime": ([], lambda per: "nodiratime" in per),
    "rdiratime": (["rnodiratime"], lambda per: "nodiratime" not in per),
    "rrelatime": (["rnoatime"], lambda per: "relatime" in per),
    "rnorelatime": ([], lambda per: True),
    "rstrictatime": (["rnoatime"], lambda per: "noatime" not in per and "relatime" not in per),
    "rnostrictatime": ([], lambda per: True),
    "rnosymfollow": ([], lambda per: "nosymfollow" in per),
    "rsymfollow": (["rnosymfollow"], lambda per: "nosymfollow" not in per),
}


@pytest.fixture(scope="module")
def all_recursive(runtime_path: str, state_root: Path, rootfs_template: Path,
                  pytestconfig: pytest.Config):
    """One container with an rbind of the host's /sys per RECURSIVE_CASES option."""
    mounts = [{"destination": f"/r-{name}", "type": "bind", "source": "/sys",
               "options": ["rbind", *before, name]} for name, (before, _) in RECURSIVE_CASES.items()]
    return _run_batch(runtime_path, state_root, rootfs_template, pytestconfig, mounts)


@pytest.mark.parametrize("option", _option_params(RECURSIVE_CASES))
@spec("configLinuxMountOptions", "Runtimes MUST/SHOULD/MAY implement the following option strings")
def test_recursive_mount_option(runtime: Runtime, bundle: Bundle, option: str, all_recursive) -> None:
    """An rbind of host /sys: the option reaches its submounts (/sys/fs/cgroup...) too."""
    before, check = RECURSIVE_CASES[option]
    top = f"/r-{option}"
    info = all_recursive
    if info is None:
        bundle.config["mounts"].append({"destination": top, "type": "bind", "source": "/sys",
                                        "options": ["rbind", *before, option]})
        info = run_check(runtime, bundle)
    subs = [m for m in info["mounts"] if m["target"].startswith(top + "/")]
    assert subs, "no submounts under the rbind"
    bad = [(m["target"], m["options"]) for m in [_mount(info, top), *subs]
           if not check(m["options"].split(","))]
    assert not bad, f"{option} not applied: {bad[:3]}"


@spec("configLinuxMountOptions", "^remount | ")
def test_remount_option(runtime: Runtime, bundle: Bundle) -> None:
    """A later entry with `remount` changes the flags of an earlier mount in place."""
    bundle.config["mounts"].append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                                    "options": ["remount", "ro", "nosuid", "nodev", "noexec"]})
    info = run_check(runtime, bundle, "--write", "/dev/shm")
    shm = [m for m in info["mounts"] if m["target"] == "/dev/shm"]
    assert len(shm) == 1, "remount made a second mount"
    assert shm[0]["options"].split(",")[0] == "ro" and info["writable"]["/dev/shm"] is False


# --- idmapped mounts ---------------------------------------------------------------------

USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _userns(bundle: Bundle) -> None:
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = USERNS_MAP
    linux["gidMappings"] = USERNS_MAP
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/sys"]
    os.chown(bundle.rootfs, 100000, 100000)


@pytest.mark.parametrize("option,nth", [("idmap", 1), ("ridmap", 2)])
@spec("configLinuxMountOptions", "^idmap | SHOULD | Indicates that the mount MUST have an idmapping applied")
@spec("configLinuxMountOptions", "^ridmap | SHOULD | Indicates that the mount MUST have an idmapping applied")
@spec("configLinuxMountOptions", "the runtime MUST use those values for the mount's mapping", nth=1)
@spec("configLinuxMountOptions", "the runtime MUST use those values for the mount's mapping", nth=2)
@spec("configLinuxMountOptions", "This SHOULD be implemented using mount_setattr(MOUNT_ATTR_IDMAP)", nth=1)
@spec("configLinuxMountOptions", "This SHOULD be implemented using mount_setattr(MOUNT_ATTR_IDMAP)", nth=2)
@spec("configPOSIXMounts", "This SHOULD be implemented using mount_setattr(MOUNT_ATTR_IDMAP)", nth=1)
@spec("configPOSIXMounts", "This SHOULD be implemented using mount_setattr(MOUNT_ATTR_IDMAP)", nth=2)
def test_idmapped_bind_mount(runtime: Runtime, bundle: Bundle, option: str, nth: int) -> None:
    """A host file owned by 2000:2000, mapped by the mount's own maps to 5:6 in the container.

    The mount's maps read as runc writes them into the idmapping's user namespace:
    `containerID` is the id on disk, `hostID` the id the host sees through the
    mount (here 100005, which the container's own 0->100000 map shows as 5)."""
    src = bundle.path / "idsrc"        # traversable by the container's mapped root
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 2000, 2000)
    _userns(bundle)
    bundle.config["mounts"].append({
        "destination": "/idm", "type": "bind", "source": str(src),
        "options": ["rbind" if option == "ridmap" else "bind", option],
        "uidMappings": [{"containerID": 2000, "hostID": 100005, "size": 1}],
        "gidMappings": [{"containerID": 2000, "hostID": 100006, "size": 1}]})
    info = run_check(runtime, bundle, "--stat", "/idm/f")
    assert (info["paths"]["/idm/f"]["uid"], info["paths"]["/idm/f"]["gid"]) == (5, 6)
    assert "idmapped" in _mount(info, "/idm")["options"]


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
@spec("configLinuxMountOptions", "the container isn't using user namespaces, an error MUST be returned", nth=1)
@spec("configLinuxMountOptions", "the container isn't using user namespaces, an error MUST be returned", nth=2)
def test_idmap_without_mappings_or_userns_is_refused(runtime: Runtime, bundle: Bundle,
                                                     tmp_path: Path, option: str) -> None:
    bundle.config["mounts"].append({"destination": "/idm", "type": "bind", "source": str(tmp_path),
                                    "options": ["bind", option]})
    fail_create(runtime, bundle)


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
@spec("configLinuxMountOptions", "the runtime MAY use the container's user namespace mapping, otherwise an error MUST be returned", nth=1)
@spec("configLinuxMountOptions", "the runtime MAY use the container's user namespace mapping, otherwise an error MUST be returned", nth=2)
def test_idmap_without_mount_mappings_in_a_userns(runtime: Runtime, bundle: Bundle, option: str) -> None:
    """No mount mappings: the container's own mapping is used, or create fails."""
    src = bundle.path / "idsrc"
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 100007, 100007)
    _userns(bundle)
    bundle.config["mounts"].append({"destination": "/idm", "type": "bind", "source": str(src),
                                    "options": ["rbind" if option == "ridmap" else "bind", option]})
    bundle.check_args("--stat", "/idm/f")
    res = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=False)
    if res.rc == 0:
        f = json.loads(res.stdout)["paths"]["/idm/f"]
        # through the container's map 100007 would show as 7 anyway; idmapped it must be
        # an idmapped mount, else the option was ignored
        info = json.loads(res.stdout)
        assert "idmapped" in _mount(info, "/idm")["options"], f"{option} ignored: {f}"
    else:
        assert res.errors


@pytest.mark.parametrize("present", ["uidMappings", "gidMappings"])
@spec("configPOSIXMounts", "If specified, it MUST be specified along with gidMappings")
@spec("configPOSIXMounts", "If specified, it MUST be specified along with uidMappings")
def test_mount_mappings_come_in_pairs(runtime: Runtime, bundle: Bundle, tmp_path: Path,
                                      present: str) -> None:
    _userns(bundle)
    bundle.config["mounts"].append({"destination": "/idm", "type": "bind", "source": str(tmp_path),
                                    "options": ["bind", "idmap"],
                                    present: [{"containerID": 0, "hostID": 2000, "size": 1}]})
    fail_create(runtime, bundle)


# --- process -------------------------------------------------------------------------

@spec("runtimeStart", "This operation MUST run the user-specified program as specified by process")
@spec("runtimeLifecycle", "The runtime MUST run the user-specified program, as specified by process")
def test_process_as_configured(runtime: Runtime, bundle: Bundle) -> None:
    """args, env, cwd, uid, gid, additionalGids, umask: what the process really has."""
    p = bundle.config["process"]
    p["env"] = ["PATH=/bin:/usr/bin", "ONE=1", "SPACES=a b  c"]
    p["cwd"] = "/tmp"
    p["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [1002, 1003], "umask": 0o027}
    info = run_check(runtime, bundle)
    assert info["args"] == ["sh", "/oci-check.sh"]
    assert info["cwd"] == "/tmp"
    # the configured ones plus HOME, which runc sets from /etc/passwd when the
    # config has none (uid 1000 has no entry here: "/"); pyrun does the same
    assert sorted(info["env"]) == sorted(p["env"] + ["HOME=/"])
    st = info["status"]
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1001"] * 4
    assert sorted(int(g) for g in st["Groups"].split()) == [1002, 1003]
    assert st["Umask"] == "0027"


@pytest.mark.parametrize("nnp", [True, False])
@spec("runtimeStart", "This operation MUST run the user-specified program as specified by process")
def test_no_new_privileges(runtime: Runtime, bundle: Bundle, nnp: bool) -> None:
    bundle.config["process"]["noNewPrivileges"] = nnp
    assert run_check(runtime, bundle)["status"]["NoNewPrivs"] == ("1" if nnp else "0")


@spec("configProcess", "Runtimes MUST ignore consoleSize if terminal is false or unset")
def test_console_size_ignored_without_terminal(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["terminal"] = False
    bundle.config["process"]["consoleSize"] = {"height": 10, "width": 20}
    info = run_check(runtime, bundle)
    assert [f["target"] for f in info["fds"] if f["fd"] in (0, 1, 2)] and \
        not any("/dev/pts" in f["target"] for f in info["fds"] if f["fd"] in (0, 1, 2))


@spec("configProcess", "This value MUST be an absolute path")
@spec(*INVALID)
def test_relative_cwd_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["cwd"] = "tmp"
    fail_create(runtime, bundle)


RLIMIT_NAMES = {"RLIMIT_NOFILE": "Max open files", "RLIMIT_CORE": "Max core file size",
                "RLIMIT_NPROC": "Max processes", "RLIMIT_MSGQUEUE": "Max msgqueue size",
                "RLIMIT_STACK": "Max stack size"}


@spec("configPOSIXProcess", "rlim.rlim_cur MUST match the configured value")
@spec("configPOSIXProcess", "rlim.rlim_max MUST match the configured value")
@spec("configPOSIXProcess", "a getrlimit(3) on type MUST succeed")
def test_rlimits_apply(runtime: Runtime, bundle: Bundle) -> None:
    rl = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768},
          {"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192},
          {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
          {"type": "RLIMIT_MSGQUEUE", "soft": 1000, "hard": 2000},
          {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608}]
    bundle.config["process"]["rlimits"] = rl
    info = run_check(runtime, bundle)
    for r in rl:
        assert info["limits"][RLIMIT_NAMES[r["type"]]] == [str(r["soft"]), str(r["hard"])], r


@pytest.mark.parametrize("rtype", ["RLIMIT_BOGUS", "NOFILE", "rlimit_nofile"])
@spec("configPOSIXProcess", "The runtime MUST generate an error for any values which cannot be mapped")
def test_invalid_rlimit_type_is_refused(runtime: Runtime, bundle: Bundle, rtype: str) -> None:
    bundle.config["process"]["rlimits"] = [{"type": rtype, "soft": 1, "hard": 1}]
    res = fail_create(runtime, bundle)
    assert any(rtype in e for e in res.errors), res.errors


@spec("configPOSIXProcess", "If rlimits contains duplicated entries with same type")
def test_duplicate_rlimit_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10},
                                           {"type": "RLIMIT_NOFILE", "soft": 20, "hard": 20}]
    fail_create(runtime, bundle)


CAP_BITS = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
            "CAP_SYS_CHROOT": 18, "CAP_SYS_ADMIN": 21, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31}


# capabilities(7) numbers, as in linux/capability.h
CAP_NUMBERS = {name: i for i, name in enumerate([
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE"])}


def caps(hexmask: str) -> set[int]:
    mask = int(hexmask, 16)
    return {b for b in range(64) if mask >> b & 1}


@spec("runtimeStart", "This operation MUST run the user-specified program as specified by process")
def test_capability_sets(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_NET_RAW"],
        "ambient": [],
    }
    bundle.config["process"]["user"] = {"uid": 0, "gid": 0}
    st = run_check(runtime, bundle)["status"]
    b = CAP_BITS
    assert caps(st["CapBnd"]) == {b["CAP_CHOWN"], b["CAP_KILL"], b["CAP_NET_RAW"], b["CAP_SYS_CHROOT"]}
    assert caps(st["CapPrm"]) == {b["CAP_CHOWN"], b["CAP_KILL"], b["CAP_NET_RAW"]}
    # execve as uid 0 makes effective = permitted (capabilities(7)), whatever was set before
    assert caps(st["CapEff"]) == caps(st["CapPrm"])
    assert caps(st["CapInh"]) == {b["CAP_NET_RAW"]}
    assert caps(st["CapAmb"]) == set()


@spec("runtimeStart", "This operation MUST run the user-specified program as specified by process")
def test_ambient_capabilities_for_non_root(runtime: Runtime, bundle: Bundle) -> None:
    names = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    bundle.config["process"]["capabilities"] = {k: names for k in
                                                ("bounding", "permitted", "effective", "inheritable", "ambient")}
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    st = run_check(runtime, bundle)["status"]
    want = {CAP_BITS[n] for n in names}
    assert caps(st["CapAmb"]) == want and caps(st["CapEff"]) == want


@pytest.mark.parametrize("cap", ["CAP_BOGUS", "CAP_FOO_BAR", "chown"])
@spec("configLinuxProcess", "Any value which cannot be mapped to a relevant kernel interface, or cannot "
      "be granted otherwise MUST be logged as a warning")
def test_unknown_capability_is_a_warning(runtime: Runtime, bundle: Bundle, cap: str) -> None:
    """runtime-spec 1.3: an unknown name is logged as a warning and the runtime
    SHOULD NOT fail (1.0 asked for an error); the container gets the rest."""
    known = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle.config["process"]["capabilities"]["bounding"] = known + [cap]
    bundle.check_args()
    cid = runtime.new_id()
    res = runtime("run", "--bundle", str(bundle.path), cid, check=False)
    assert res.rc == 0, res.stderr
    assert [w for w in res.warnings if cap in w], res.stderr
    assert caps(json.loads(res.stdout)["status"]["CapBnd"]) == {CAP_BITS[n] for n in known}


@spec("configLinuxProcess", "If oomScoreAdj is set, the runtime MUST set oom_score_adj")
def test_oom_score_adj_set(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["oomScoreAdj"] = 345
    assert run_check(runtime, bundle)["oom_score_adj"] == 345


@spec("configLinuxProcess", "If oomScoreAdj is not set, the runtime MUST NOT change")
def test_oom_score_adj_unset_is_inherited(runtime: Runtime, bundle: Bundle) -> None:
    """The runtime started with oom_score_adj 123: the container has 123 too."""
    import json
    bundle.config["process"].pop("oomScoreAdj", None)
    bundle.check_args()
    cid = runtime.new_id()

    def adj() -> None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("123")

    import subprocess
    proc = subprocess.run([runtime.path, "--root", str(runtime.root), "run", "--bundle",
                           str(bundle.path), cid], capture_output=True, text=True, timeout=30,
                          preexec_fn=adj, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["oom_score_adj"] == 123


# --- hostname, domainname ---------------------------------------------------------

@spec("runtimeCreate", "All of the properties configured in config.json except for process MUST be applied")
def test_hostname(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["hostname"] = "conf-host"
    assert run_check(runtime, bundle)["hostname"] == "conf-host"


@spec("runtimeCreate", "All of the properties configured in config.json except for process MUST be applied")
def test_domainname(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["domainname"] = "conf.example"
    assert run_check(runtime, bundle)["domainname"] == "conf.example"


# --- annotations, unknown properties, platform -------------------------------------

@spec("configAnnotations", "Runtimes MUST handle unknown annotation keys like any other unknown property")
def test_unknown_annotations_are_kept_and_ignored(runtime: Runtime, bundle: Bundle) -> None:
    ann = {"com.example.unknown": "v", "org.opencontainers.image.os": "linux", "x": ""}
    bundle.config["annotations"] = ann
    bundle.set_args("sleep", "30")
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid)
    assert runtime.state(cid).get("annotations") == ann
    runtime("delete", "--force", cid)


@spec("configAnnotations", "Keys MUST NOT be an empty string")
def test_empty_annotation_key_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["annotations"] = {"": "v"}
    fail_create(runtime, bundle)


@pytest.mark.parametrize("value", [1, True, None, ["a"], {"a": "b"}])
@spec("configAnnotations", "Values MUST be strings")
def test_non_string_annotation_value_is_refused(runtime: Runtime, bundle: Bundle, value) -> None:
    bundle.config["annotations"] = {"com.example.k": value}
    fail_create(runtime, bundle)


@spec("configAnnotations", "Annotations MUST be a key-value map")
def test_annotations_not_a_map_are_refused(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["annotations"] = ["com.example.k=v"]
    fail_create(runtime, bundle)


@spec("configExtensibility", "Runtimes MAY log unknown properties but MUST otherwise ignore them")
def test_unknown_properties_are_ignored(runtime: Runtime, bundle: Bundle) -> None:
    c = bundle.config
    c["com.example.topLevel"] = {"any": ["thing"]}
    c["process"]["com.example.inProcess"] = 1
    c["linux"]["com.example.inLinux"] = "x"
    c["root"]["com.example.inRoot"] = True
    c["mounts"][0]["com.example.inMount"] = None
    c["process"]["user"]["com.example.inUser"] = []
    info = run_check(runtime, bundle)
    assert info["pid"] == 1


@spec("configExtensibility", "Runtimes MAY log unknown properties but MUST otherwise ignore them")
def test_other_platform_sections_are_ignored(runtime: Runtime, bundle: Bundle) -> None:
    """Sections for other platforms (solaris, windows, vm, zos) next to linux: the
    properties of another platform are of no meaning here, the Linux container runs."""
    c = bundle.config
    c["solaris"] = {"milestone": "svc:/milestone/container:default"}
    c["vm"] = {"kernel": {"path": "/path/to/vmlinuz"}}
    c["zos"] = {"namespaces": []}
    info = run_check(runtime, bundle)
    assert info["pid"] == 1


def _run_without_cap(runtime: Runtime, bundle: Bundle, bit: int):
    """`run` with the runtime itself lacking capability `bit` (dropped from its bounding
    set, as in a restricted sandbox)."""
    import ctypes
    import subprocess

    def drop() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(24, bit, 0, 0, 0)    # PR_CAPBSET_DROP

    cid = runtime.new_id()
    return subprocess.run([runtime.path, "--root", str(runtime.root), "--log-format", "json",
                           "run", "--bundle", str(bundle.path), cid], capture_output=True,
                          text=True, timeout=30, preexec_fn=drop, stdin=subprocess.DEVNULL)


CAP_SYSLOG = 34


@spec("configLinuxProcess", "Any value which cannot be mapped to a relevant kernel interface, or cannot be granted otherwise MUST be logged as a warning")
def test_ungrantable_capability_is_logged(runtime: Runtime, bundle: Bundle) -> None:
    for kind in ("bounding", "permitted", "effective"):
        bundle.config["process"]["capabilities"][kind].append("CAP_SYSLOG")
    bundle.check_args()
    proc = _run_without_cap(runtime, bundle, CAP_SYSLOG)
    logged = [line for line in proc.stderr.splitlines()
              if "CAP_SYSLOG" in line and ('"warning"' in line or '"error"' in line)]
    assert logged, f"CAP_SYSLOG could not be granted and nothing says so: {proc.stderr!r}"


@spec("configLinuxProcess", "Runtimes SHOULD NOT fail if the container configuration requests capabilities that cannot be granted")
def test_ungrantable_capability_does_not_fail(runtime: Runtime, bundle: Bundle) -> None:
    for kind in ("bounding", "permitted", "effective"):
        bundle.config["process"]["capabilities"][kind].append("CAP_SYSLOG")
    bundle.check_args()
    proc = _run_without_cap(runtime, bundle, CAP_SYSLOG)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)["status"]
    assert not int(st["CapBnd"], 16) >> CAP_SYSLOG & 1
    assert int(st["CapBnd"], 16) >> 5 & 1, "the grantable capabilities were lost too (CAP_KILL)"
