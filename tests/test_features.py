"""`pyrun features`: a valid Features structure that claims only what pyrun does.

Each claim is checked against a real container: the mount options in mounts,
the namespaces in one container, the seccomp actions and operators in one
profile; the capabilities against the running kernel.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED, Bundle

UPSTREAM_SCHEMA_DIR = SHARED / "oci-runtime-spec" / "schema"


@pytest.fixture(scope="module")
def features_run(state_root: Path) -> tuple[dict[str, Any], Any]:
    from conftest import Pyrun
    res = Pyrun(state_root)("features")
    return json.loads(res.stdout), res


@pytest.fixture(scope="module")
def features(features_run) -> dict[str, Any]:
    return features_run[0]


def _upstream_validator() -> Any:
    from jsonschema.validators import validator_for
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    resources = []
    for path in sorted(UPSTREAM_SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.resolve().as_uri(), Resource.from_contents(contents, default_specification=DRAFT4)))
    entry = UPSTREAM_SCHEMA_DIR / "features-schema.json"
    cls = validator_for(json.loads(entry.read_text(encoding="utf-8")))
    return cls({"$ref": entry.resolve().as_uri()}, registry=Registry().with_resources(resources))


def _errors(validator: Any, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


# --- the document ------------------------------------------------------------------

def test_output_is_indented_json_on_stdout_only(features_run):
    doc, res = features_run
    assert res.returncode == 0
    assert res.stderr == ""
    assert res.stdout == json.dumps(doc, indent=2) + "\n"


def test_validates_against_our_schema(features):
    from pyrun.spec.schema_loader import load_validator
    assert _errors(load_validator("features"), features) == []


def test_validates_against_the_upstream_schema(features):
    if not (UPSTREAM_SCHEMA_DIR / "features-schema.json").is_file():
        pytest.skip(f"upstream runtime-spec schema not found at {UPSTREAM_SCHEMA_DIR}")
    assert _errors(_upstream_validator(), features) == []


def test_versions_and_annotations(features):
    import pyrun
    assert features["ociVersionMin"] == "1.0.0"
    assert features["ociVersionMax"] == pyrun.SPEC_VERSION == "1.3.0"
    ann = features["annotations"]
    assert ann["io.github.pyrun.version"] == pyrun.__version__
    commit = ann["io.github.pyrun.commit"]
    assert commit
    for key in ann:
        assert not key.startswith("org.opencontainers.runc.")
    import shutil
    assert ann["io.github.pyrun.checkpoint.enabled"] == ("true" if shutil.which("criu") else "false")
    if "io.github.seccomp.libseccomp.version" in ann:
        assert all(part.isdigit() for part in ann["io.github.seccomp.libseccomp.version"].split("."))


def test_commit_matches_version_output(features, state_root):
    from conftest import Pyrun
    out = Pyrun(state_root)("--version").stdout
    assert f"commit: {features['annotations']['io.github.pyrun.commit']}\n" in out


def test_hooks(features):
    assert features["hooks"] == ["prestart", "createRuntime", "createContainer",
                                 "startContainer", "poststart", "poststop"]


def test_unimplemented_features_are_not_claimed(features):
    linux = features["linux"]
    # systemd: the driver, run in the systemd VM (test_cgroup_v2_vm.py); the user bus is untested
    assert linux["cgroup"] == {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": True}
    assert features["potentiallyUnsafeConfigAnnotations"] == []


def test_mount_options_are_all_known_words(features):
    from pyrun.rootfs.options import FLAGS, PROPAGATION, RECURSIVE_ATTRS
    claimed = set(features["mountOptions"])
    assert "tmpcopyup" in claimed        # runc 1.4.3 lists it too
    assert claimed - {"idmap", "ridmap", "tmpcopyup"} == set(FLAGS) | set(PROPAGATION) | set(RECURSIVE_ATTRS)
    assert {"rbind", "rro", "rprivate", "rslave", "runbindable", "nosymfollow"} <= claimed
    assert len(features["mountOptions"]) == len(claimed)


def test_capabilities_are_the_kernels(features):
    from pyrun.linux.capabilities import CAPABILITIES
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    by_number = {num: name for name, num in CAPABILITIES.items()}
    assert features["linux"]["capabilities"] == [by_number[n] for n in range(last + 1) if n in by_number]


def test_memory_policy(features):
    from pyrun.linux.mempolicy import FLAGS, MODES
    mp = features["linux"]["memoryPolicy"]
    assert set(mp["modes"]) == set(MODES) and set(mp["flags"]) == set(FLAGS)


def test_seccomp_flags(features):
    sc = features["linux"]["seccomp"]
    assert sc["enabled"] is True
    assert set(sc["supportedFlags"]) <= set(sc["knownFlags"])
    assert "SECCOMP_FILTER_FLAG_LOG" in sc["supportedFlags"]      # any kernel since 4.14


# --- the claims, used --------------------------------------------------------------

def _run_true(pyrun, bundle: Bundle) -> None:
    bundle.set_args("true")
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid, check=False)
    assert res.returncode == 0, res
    assert res.stderr == ""


# Every claimed option, spread over mounts where they do not contradict each
# other.  Options that need a bind (the r* attributes) go on bind mounts.
_FRESH = [
    ["nosuid", "nodev", "noexec", "noatime", "nodiratime", "sync", "dirsync", "lazytime",
     "silent", "iversion", "nomand", "nosymfollow", "ro", "private", "mode=755"],
    ["suid", "dev", "exec", "atime", "diratime", "async", "nolazytime", "loud", "noiversion",
     "relatime", "norelatime", "strictatime", "nostrictatime", "symfollow", "rw", "defaults",
     "remount", "mand", "shared", "rshared"],
    ["relatime", "slave", "rslave", "unbindable"],
    ["rprivate", "runbindable", "tmpcopyup"],
]
_BIND = [
    ["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnoatime", "rnodiratime", "rnosymfollow", "rslave"],
    ["bind", "rrw", "rsuid", "rdev", "rexec", "ratime", "rdiratime", "rnorelatime", "rstrictatime",
     "rnostrictatime", "rsymfollow", "rprivate"],
    ["rbind", "rrelatime", "rprivate"],
    ["bind", "idmap"],
    ["rbind", "ridmap"],
]


def test_claimed_mount_options_are_accepted(pyrun, bundle, features, tmp_path):
    used = {o for opts in _FRESH + _BIND for o in opts if "=" not in o}
    assert used == set(features["mountOptions"]), "the mounts below must cover every claim"
    for i, opts in enumerate(_FRESH):
        bundle.config["mounts"].append({"destination": f"/fresh{i}", "type": "tmpfs",
                                        "source": "tmpfs", "options": opts})
    for i, opts in enumerate(_BIND):
        src = tmp_path / f"src{i}"
        src.mkdir()
        bundle.config["mounts"].append({"destination": f"/bound{i}", "type": "bind",
                                        "source": str(src), "options": opts})
        if "idmap" in opts or "ridmap" in opts:
            one = [{"containerID": 1000, "hostID": 0, "size": 1}]
            bundle.config["mounts"][-1].update(uidMappings=one, gidMappings=one)
    _run_true(pyrun, bundle)


def test_claimed_namespaces_work_together(pyrun, open_bundle, features):
    bundle = open_bundle
    linux = bundle.config["linux"]
    claimed = features["linux"]["namespaces"]
    assert {"user", "time"} <= set(claimed)
    linux["namespaces"] = [{"type": t} for t in claimed]
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.set_args("sh", "-c", 'for n in /proc/self/ns/*; do echo "${n##*/} $(readlink $n)"; done')
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert res.returncode == 0, res
    inside = dict(line.split() for line in res.stdout.splitlines())
    from pyrun.linux.namespaces import NAMESPACES
    for t in claimed:
        proc_name = NAMESPACES[t][1]
        assert inside[proc_name] != os.readlink(f"/proc/self/ns/{proc_name}"), t


class _Agent(threading.Thread):
    """Takes the listener fd pyrun sends for SCMP_ACT_NOTIFY and closes it."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(20)
        self.fds = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                _data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 4)
                while conn.recv(65536):
                    pass
            self.fds = len(fds)
            for fd in fds:
                os.close(fd)
        except BaseException as e:
            self.error = e
        finally:
            self.server.close()


def test_claimed_seccomp_actions_operators_and_archs_are_accepted(pyrun, bundle, features, tmp_path):
    sc = features["linux"]["seccomp"]
    # syscalls neither the init nor `true` make, so each action is safe to use
    harmless = ["kexec_load", "kexec_file_load", "acct", "swapon", "swapoff", "vhangup",
                "quotactl", "uselib", "syslog", "reboot", "init_module", "delete_module"]
    actions = [a for a in sc["actions"] if a != "SCMP_ACT_ALLOW"]
    assert len(actions) < len(harmless)
    rules: list[dict[str, Any]] = [{"names": [name], "action": action}
                                   for name, action in zip(harmless, actions)]
    ops = sc["operators"]
    # distinct argument indexes, so libseccomp ANDs them into one rule
    rules.append({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": i, "op": op, "value": 1, "valueTwo": 1}
                           for i, op in enumerate(o for o in ops if o != "SCMP_CMP_MASKED_EQ")]})
    rules.append({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 0xFF, "valueTwo": 0x42}]})
    rules.append({"names": ["getpid"], "action": "SCMP_ACT_ALLOW"})     # equal to the default
    agent_path = tmp_path / "agent.sock"
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": sc["archs"],
        "flags": sc["supportedFlags"],
        "listenerPath": str(agent_path),
        "syscalls": rules,
    }
    agent = _Agent(agent_path)
    agent.start()
    try:
        _run_true(pyrun, bundle)
    finally:
        agent.join(25)
    assert agent.error is None and agent.fds == 1


def test_features_takes_no_arguments_beyond_flags(pyrun):
    res = pyrun("features", "--bogus", check=False)
    assert res.returncode != 0
