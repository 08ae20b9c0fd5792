"""features.md and features-linux.md: what `features` claims must be true.

Every claim is exercised: each listed hook, mount option, namespace, capability,
seccomp action/operator/arch/flag and memory policy mode is put in a config,
and the runtime must accept it (and run the container)."""
from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

import statements
from conftest import Bundle, Runtime, run_check, validate

spec = pytest.mark.spec


@pytest.fixture(scope="module")
def features(runtime_path: str) -> dict[str, Any]:
    proc = subprocess.run([runtime_path, "features"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _semver(v: str) -> tuple:
    core = re.match(r"(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?", v)
    assert core, v
    major, minor, patch, pre = core.groups()
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre or "")


def _defined_names() -> set[str]:
    """Property names the two features documents define (their **`name`** entries)."""
    names = set()
    for f in ("features.md", "features-linux.md"):
        names |= set(re.findall(r"\*\*`([A-Za-z0-9]+)`\*\*", (statements.SPEC_DIR / f).read_text()))
    return names


def _keys(obj: Any, path: str = "") -> list[tuple[str, str]]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if path.endswith("annotations") or path.endswith("potentiallyUnsafeConfigAnnotations"):
                continue
            out.append((f"{path}.{k}".lstrip("."), k))
            out += _keys(v, f"{path}.{k}")
    return out


@spec("featuresSpecificationVersion", "The Features structure MUST NOT contain properties that are not defined")
@spec("features", "The null value MUST NOT be confused with an empty value")
@spec("featuresAnnotations", "Annotations MUST be a key-value map")
def test_features_document(features: dict[str, Any]) -> None:
    validate(features, "features-schema.json")
    defined = _defined_names()
    unknown = [p for p, k in _keys(features) if k not in defined and not p.startswith("annotations.")]
    assert not unknown, f"properties this spec does not define: {unknown}"
    for key in ("hooks", "mountOptions"):
        assert type(features.get(key)) in (type(None), list), key
    for k, v in (features.get("annotations") or {}).items():
        assert isinstance(k, str) and k and isinstance(v, str)


@spec("featuresSpecificationVersion", "The value MUST NOT be less than the value of the ociVersionMin property")
def test_version_range(features: dict[str, Any]) -> None:
    assert _semver(features["ociVersionMax"]) >= _semver(features["ociVersionMin"])


@pytest.mark.parametrize("which,nth", [("ociVersionMin", 1), ("ociVersionMax", 2)])
@spec("featuresSpecificationVersion", "The runtime MUST accept this value as the ociVersion property", nth=1)
@spec("featuresSpecificationVersion", "The runtime MUST accept this value as the ociVersion property", nth=2)
def test_claimed_versions_are_accepted(runtime: Runtime, bundle: Bundle, features: dict[str, Any],
                                       which: str, nth: int) -> None:
    bundle.config["ociVersion"] = features[which]
    assert run_check(runtime, bundle)["pid"] == 1


@spec("featuresHooks", "The runtime MUST support the elements in this array as the hooks property")
def test_claimed_hooks_run(runtime: Runtime, bundle: Bundle, features: dict[str, Any], tmp_path) -> None:
    out = tmp_path / "ran"
    out.mkdir(mode=0o777)
    bundle.config["mounts"].append({"destination": "/ran", "type": "bind", "source": str(out),
                                    "options": ["rbind", "rw"]})
    hooks = {}
    for kind in features.get("hooks") or []:
        where = "/ran" if kind == "startContainer" else str(out)
        hooks[kind] = [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {where}/{kind}"]}]
    bundle.config["hooks"] = hooks
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid)
    runtime("start", cid)
    runtime.wait_status(cid, "stopped")
    runtime("delete", cid)
    assert sorted(p.name for p in out.iterdir()) == sorted(hooks)


_BIND_LIKE = {"bind", "rbind", "idmap", "ridmap"}


def _option_mount(option: str, i: int, bundle: Bundle) -> dict[str, Any]:
    if option in _BIND_LIKE:
        src = bundle.path / f"src{i}"
        src.mkdir(exist_ok=True)
        opts = [option] if option in ("bind", "rbind") else ["bind", option]
        mount = {"destination": f"/o{i}", "type": "bind", "source": str(src), "options": opts}
        if option in ("idmap", "ridmap"):   # config.md: without any mapping, an error MUST be returned
            mount["uidMappings"] = mount["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
        return mount
    return {"destination": f"/o{i}", "type": "tmpfs", "source": "tmpfs", "options": [option]}


@spec("featuresMountOptions", "The runtime MUST recognize the elements in this array as the options")
def test_claimed_mount_options_are_recognised(runtime: Runtime, bundle: Bundle,
                                              features: dict[str, Any]) -> None:
    """All claimed options in one container; if it fails, each alone names the culprits."""
    claimed = [o for o in features.get("mountOptions") or [] if o not in ("remount",)]
    base = list(bundle.config["mounts"])
    bundle.config["mounts"] = base + [_option_mount(o, i, bundle) for i, o in enumerate(claimed)]
    bundle.check_args()
    res = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=False)
    refused = []
    for i, o in enumerate(claimed if res.rc != 0 else []):     # only to name the culprits
        bundle.config["mounts"] = base + [_option_mount(o, i, bundle)]
        bundle.write()
        r = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=False)
        if r.rc != 0:
            refused.append(f"{o}: {(r.errors or [r.stderr])[-1][:160]}")
    assert res.rc == 0, f"claimed but refused: {refused or res.errors or res.stderr}"


@spec("featuresMountOptions", "this array SHOULD NOT contain filesystem-specific mount options")
def test_claimed_mount_options_are_not_fs_specific(features: dict[str, Any]) -> None:
    fs_specific = {"size", "mode", "uid", "gid", "nr_inodes", "acl", "noacl", "user_xattr",
                   "newinstance", "ptmxmode", "data", "errors", "commit", "discard"}
    opts = features.get("mountOptions") or []
    assert not [o for o in opts if "=" in o or o in fs_specific]


@spec("linuxFeaturesNamespaces", "The runtime MUST recognize the elements in this array as the type")
def test_claimed_namespaces_are_recognised(runtime: Runtime, bundle: Bundle,
                                           features: dict[str, Any]) -> None:
    import os
    kinds = (features.get("linux") or {}).get("namespaces") or []
    linux = bundle.config["linux"]
    linux["namespaces"] = [{"type": k} for k in kinds]
    if "user" in kinds:
        linux["uidMappings"] = linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/sys"]
        os.chown(bundle.rootfs, 100000, 100000)
    if "uts" not in kinds:
        bundle.config.pop("hostname", None)
    info = run_check(runtime, bundle)
    assert (info["pid"] == 1) == ("pid" in kinds), info["pid"]    # pid 1 exactly when a new pid ns was asked for


@spec("linuxFeaturesCapabilities", "The runtime MUST recognize the elements in this array in the process.capabilities")
def test_claimed_capabilities_are_recognised(runtime: Runtime, bundle: Bundle,
                                             features: dict[str, Any]) -> None:
    """Every claimed name the runtime itself holds (a sandbox may lack some: those are
    test_config.py's ungrantable case) ends up in the container's bounding set."""
    from test_config import CAP_NUMBERS
    with open("/proc/self/status") as f:
        ours = int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)
    caps = [c for c in (features.get("linux") or {}).get("capabilities") or []
            if c in CAP_NUMBERS and ours >> CAP_NUMBERS[c] & 1]
    bundle.config["process"]["capabilities"] = {k: caps for k in ("bounding", "permitted", "effective")}
    info = run_check(runtime, bundle)
    got = int(info["status"]["CapBnd"], 16)
    assert [c for c in caps if not got >> CAP_NUMBERS[c] & 1] == []


# Syscalls busybox sh and the checker never make: safe to attach any action to.
_UNUSED = ["acct", "swapon", "swapoff", "kexec_load", "reboot", "quotactl", "syslog", "vhangup",
           "pivot_root", "iopl", "ioperm", "init_module", "delete_module", "lookup_dcookie",
           "nfsservctl", "add_key", "request_key", "keyctl", "mbind", "migrate_pages"]


@spec("linuxFeaturesSeccomp", "MUST recognize the elements in this array in the [syscalls[].action property")
@spec("linuxFeaturesSeccomp", "MUST recognize the elements in this array in the [syscalls[].args[].op property")
@spec("linuxFeaturesSeccomp", "MUST recognize the elements in this array in the architectures property")
@spec("linuxFeaturesSeccomp", "MUST recognize the elements in this array in the flags property")
def test_claimed_seccomp_words_are_recognised(runtime: Runtime, bundle: Bundle,
                                              features: dict[str, Any]) -> None:
    sc = (features.get("linux") or {}).get("seccomp") or {}
    if not sc.get("enabled"):
        pytest.skip("the runtime claims no seccomp support")
    rules = []
    syscalls = iter(_UNUSED)
    for action in sc.get("actions") or []:
        if action == "SCMP_ACT_NOTIFY":
            continue            # needs a listenerPath: test_config_linux covers it
        rules.append({"names": [next(syscalls)], "action": action})
    for op in sc.get("operators") or []:
        rules.append({"names": [next(syscalls)], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": op}]})
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": sc.get("archs") or [],
        "flags": [f for f in sc.get("knownFlags") or [] if f in (sc.get("supportedFlags") or [])
                  and f != "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": rules}
    assert run_check(runtime, bundle)["status"]["Seccomp"] == "2"


@pytest.mark.parametrize("flag", ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
@spec("linuxFeaturesSeccomp", "MUST recognize and support the elements in this array in the flags property")
def test_supported_seccomp_flags_work(runtime: Runtime, bundle: Bundle, features: dict[str, Any],
                                      flag: str) -> None:
    sc = (features.get("linux") or {}).get("seccomp") or {}
    if flag not in (sc.get("supportedFlags") or []):
        pytest.skip(f"{flag} is not claimed")
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag],
                                         "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]}
    assert run_check(runtime, bundle)["status"]["Seccomp"] == "2"


_NEEDS_NODES = {"MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED", "MPOL_PREFERRED_MANY",
                "MPOL_WEIGHTED_INTERLEAVE"}


@spec("linuxFeaturesMemoryPolicy", "The runtime MUST recognize the elements in this array as the mode")
@spec("linuxFeaturesMemoryPolicy", "The runtime MUST recognize the elements in this in the flags property")
def test_claimed_memory_policies_are_recognised(runtime: Runtime, bundle: Bundle,
                                                features: dict[str, Any]) -> None:
    mp = (features.get("linux") or {}).get("memoryPolicy") or {}
    cases = [{"mode": m, **({"nodes": "0"} if m in _NEEDS_NODES else {})} for m in mp.get("modes") or []]
    cases += [{"mode": "MPOL_BIND", "nodes": "0", "flags": [f]} for f in mp.get("flags") or []
              if f != "MPOL_F_NUMA_BALANCING"]
    if "MPOL_F_NUMA_BALANCING" in (mp.get("flags") or []):
        cases.append({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]})
    refused = []
    for policy in cases:
        bundle.config["linux"]["memoryPolicy"] = policy
        bundle.set_args("true")
        r = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=False)
        if r.rc != 0 and "invalid argument" not in " ".join(r.errors).lower():
            refused.append((policy, r.errors))
    assert not refused, refused


@spec("linuxFeaturesMountExtensions", "runtimes MUST still set this value to true")
def test_idmap_claim_matches_behaviour(runtime: Runtime, bundle: Bundle, features: dict[str, Any]) -> None:
    """Claimed: an idmapped bind mount is honoured.  Not claimed: such a mount is not
    silently mounted unmapped (it is refused)."""
    import os
    enabled = (((features.get("linux") or {}).get("mountExtensions") or {}).get("idmap") or {}).get("enabled")
    src = bundle.path / "idsrc"
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 2000, 2000)
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/sys"]
    os.chown(bundle.rootfs, 100000, 100000)
    bundle.config["mounts"].append({"destination": "/idm", "type": "bind", "source": str(src),
                                    "options": ["bind", "idmap"],
                                    "uidMappings": [{"containerID": 2000, "hostID": 100005, "size": 1}],
                                    "gidMappings": [{"containerID": 2000, "hostID": 100006, "size": 1}]})
    bundle.check_args("--stat", "/idm/f")
    res = runtime("run", "--bundle", str(bundle.path), runtime.new_id(), check=False)
    if enabled:
        assert res.rc == 0, res.stderr
        assert json.loads(res.stdout)["paths"]["/idm/f"]["uid"] == 5
    else:   # not claimed: refusing it is fine, ignoring it (an unmapped mount) is not
        outcome = "refused" if res.rc != 0 else json.loads(res.stdout)["paths"]["/idm/f"]["uid"]
        assert outcome in ("refused", 5), "idmap not claimed, yet the mount was made unmapped"
