"""The config.json a real Docker writes, run by pyrun.

A private dockerd (tests/dockerd.py) gets one extra runtime, `capture`: a shell
script that copies the bundle's config.json aside on `create` and then execs
Debian's runc, so Docker's container really runs. That gives Docker's real
default seccomp profile (compiled into dockerd, never vendored here) and what
Docker makes of a `--security-opt seccomp=<file>` profile. The captured
seccomp, capabilities, masked/read-only paths and mounts are then put into a
fresh busybox bundle and run by pyrun, and by runc side by side: both must
print the same thing, and agree with what the container printed under Docker.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ID_PREFIX, Bundle
from dockerd import Dockerd, dockerd_fixture

pytestmark = pytest.mark.docker

RUNC = "/usr/sbin/runc"
RUNC_OCI_VERSION = "1.0.2"     # Debian's runc 1.1.5 refuses newer ociVersions
EPERM_TEXT = "Operation not permitted"

CAPTURE_SCRIPT = """#!/bin/sh
# An OCI runtime for dockerd's --add-runtime: on `create`, copy the bundle's
# config.json to CAPTURES/<container id>.json, then let runc do the real work.
create=; bundle=; prev=; last=
for a in "$@"; do
    case "$prev" in --bundle|-b) bundle=$a ;; esac
    case "$a" in create) create=1 ;; --bundle=*) bundle=${a#--bundle=} ;; esac
    prev=$a
    last=$a
done
if [ -n "$create" ] && [ -n "$bundle" ]; then
    cp "$bundle/config.json" "CAPTURES/$last.json.tmp" && mv "CAPTURES/$last.json.tmp" "CAPTURES/$last.json" || exit 1
fi
exec RUNC "$@"
"""

# What the containers run; the same text under Docker, pyrun and runc.
DEFAULT_PROBE = ('grep Seccomp: /proc/self/status; '
                 'unshare -U true 2>&1; echo "unshare exit $?"')
DEFAULT_SCRIPT = ('grep Seccomp: /proc/self/status; echo ok; ls /; '
                  'unshare -U true 2>&1; echo "unshare exit $?"')
CHMOD_SCRIPT = ('grep Seccomp: /proc/self/status; touch /tmp/x; '
                'chmod 600 /tmp/x 2>&1; echo "chmod exit $?"; echo ok')
CHMOD_PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"],
                  "action": "SCMP_ACT_ERRNO"}],
}


def capture_runtime(scratch: Path) -> dict[str, str]:
    captures = scratch / "captures"
    captures.mkdir()
    script = scratch / "capture-runtime"
    script.write_text(CAPTURE_SCRIPT.replace("CAPTURES", str(captures)).replace("RUNC", RUNC))
    script.chmod(0o755)
    return {"capture": str(script)}


dockerd = dockerd_fixture(runtimes=capture_runtime)


@dataclass
class DockerRun:
    config: dict[str, Any]      # the config.json Docker handed to the runtime
    output: str                 # what the container printed under Docker + runc
    returncode: int


def docker_capture(daemon: Dockerd, *run_opts: str, script: str) -> DockerRun:
    cidfile = daemon.scratch / f"cid-{uuid.uuid4().hex}"
    r = daemon.docker("run", "--rm", "--cidfile", str(cidfile), "--runtime", "capture",
                      *run_opts, daemon.image, "sh", "-c", script)
    cid = cidfile.read_text().strip()
    captured = daemon.scratch / "captures" / f"{cid}.json"
    assert captured.exists(), f"the capture runtime saw no create for {cid}\n{daemon.log_tail()}"
    return DockerRun(json.loads(captured.read_text()), r.stdout + r.stderr, r.returncode)


@pytest.fixture(scope="session")
def docker_default_run(dockerd: Dockerd) -> DockerRun:
    return docker_capture(dockerd, script=DEFAULT_PROBE)


@pytest.fixture(scope="session")
def docker_default_config(docker_default_run: DockerRun) -> dict[str, Any]:
    """The config.json Docker writes for a plain `docker run`, default seccomp included."""
    return copy.deepcopy(docker_default_run.config)


@pytest.fixture(scope="session")
def docker_chmod_run(dockerd: Dockerd) -> DockerRun:
    profile = dockerd.scratch / "deny-chmod.json"
    profile.write_text(json.dumps(CHMOD_PROFILE))
    return docker_capture(dockerd, "--security-opt", f"seccomp={profile}", script=CHMOD_SCRIPT)


# --- helpers ---------------------------------------------------------------------

DOCKER_ETC_FILES = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}


def adopt_docker_config(bundle: Bundle, docker: dict[str, Any]) -> list[str]:
    """Take Docker's seccomp, capabilities, masked/read-only paths and mounts into
    the bundle. Bind mounts whose source is gone (Docker's per-container
    hostname/hosts/resolv.conf, removed with the container) are dropped; their
    destinations are returned."""
    cfg = bundle.config
    cfg["root"]["path"] = str(bundle.rootfs)
    cfg["process"]["capabilities"] = copy.deepcopy(docker["process"]["capabilities"])
    cfg["process"]["noNewPrivileges"] = bool(docker["process"].get("noNewPrivileges", False))
    for key in ("seccomp", "maskedPaths", "readonlyPaths"):
        if key in docker["linux"]:
            cfg["linux"][key] = copy.deepcopy(docker["linux"][key])
    kept, dropped = [], []
    for m in docker["mounts"]:
        if m.get("type") == "bind" and not os.path.exists(m.get("source", "")):
            dropped.append(m["destination"])
        else:
            kept.append(copy.deepcopy(m))
    cfg["mounts"] = kept
    bundle.write()
    return dropped


def run_pyrun(pyrun, bundle: Bundle, script: str) -> subprocess.CompletedProcess:
    bundle.set_args("sh", "-c", script)
    return pyrun("run", "--bundle", str(bundle.path), pyrun.new_id(), check=False)


def run_runc(bundle: Bundle, tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    """The same config and rootfs, run by Debian's runc with its own --root."""
    cfg = copy.deepcopy(bundle.config)
    cfg["ociVersion"] = RUNC_OCI_VERSION
    cfg["process"]["args"] = ["sh", "-c", script]
    cfg["root"]["path"] = str(bundle.rootfs)
    rb = tmp_path / f"runc-bundle-{uuid.uuid4().hex[:6]}"
    rb.mkdir()
    (rb / "config.json").write_text(json.dumps(cfg, indent=2))
    cid = f"{ID_PREFIX}runc-{uuid.uuid4().hex[:8]}"
    cmd = [RUNC, "--root", str(tmp_path / "runc-root"), "run", "--bundle", str(rb), cid]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                              text=True, timeout=30)
        out.seek(0)
        err.seek(0)
        proc.stdout, proc.stderr = out.read(), err.read()
    return proc


def lines_with(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if any(w in line for w in words)]


def profile_summary(seccomp: dict[str, Any]) -> str:
    names = [n for rule in seccomp.get("syscalls", []) for n in rule.get("names", [])]
    return (f"defaultAction={seccomp.get('defaultAction')} "
            f"defaultErrnoRet={seccomp.get('defaultErrnoRet')} "
            f"architectures={seccomp.get('architectures')} flags={seccomp.get('flags')} "
            f"entries={len(seccomp.get('syscalls', []))} names={len(names)}")


# --- the tests -------------------------------------------------------------------

def test_docker_writes_its_default_seccomp_profile(docker_default_config: dict[str, Any]) -> None:
    seccomp = docker_default_config["linux"]["seccomp"]
    print(profile_summary(seccomp))
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "SCMP_ARCH_X86_64" in seccomp.get("architectures", [])
    allowed = {n for rule in seccomp["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               for n in rule["names"]}
    assert len(allowed) > 250, profile_summary(seccomp)
    assert {"read", "write", "execve", "exit_group", "chmod"} <= allowed
    # Granted only with CAP_SYS_ADMIN, which a plain `docker run` does not give.
    assert "unshare" not in allowed and "mount" not in allowed
    assert "CAP_SYS_ADMIN" not in docker_default_config["process"]["capabilities"]["bounding"]


def test_docker_default_profile_under_pyrun_and_runc(pyrun, bundle: Bundle, tmp_path: Path,
                                                      docker_default_run: DockerRun) -> None:
    dropped = adopt_docker_config(bundle, docker_default_run.config)
    assert set(dropped) <= DOCKER_ETC_FILES, dropped

    got = run_pyrun(pyrun, bundle, DEFAULT_SCRIPT)
    assert got.returncode == 0, f"pyrun failed under Docker's default profile:\n{got.stderr}"
    out = got.stdout
    assert "Seccomp:\t2" in out.splitlines(), out
    assert "ok" in out.splitlines(), out
    assert {"bin", "etc", "proc", "sys", "dev", "tmp"} <= set(out.split()), out
    assert f"unshare: unshare(0x10000000): {EPERM_TEXT}" in out, out
    assert "unshare exit 1" in out, out

    # The same command under Docker itself (runc behind the capture runtime).
    probe = ("Seccomp:", "unshare")
    assert lines_with(out, *probe) == lines_with(docker_default_run.output, *probe), \
        f"pyrun:\n{out}\ndocker:\n{docker_default_run.output}"

    # runc, same config and rootfs: the same output.
    ref = run_runc(bundle, tmp_path, DEFAULT_SCRIPT)
    assert ref.returncode == 0, ref.stderr
    assert out == ref.stdout, f"pyrun:\n{out}\nrunc:\n{ref.stdout}"

    # Without the filter the same unshare works: the denial is the profile's.
    del bundle.config["linux"]["seccomp"]
    bundle.write()
    plain = run_pyrun(pyrun, bundle, DEFAULT_SCRIPT)
    assert plain.returncode == 0, plain.stderr
    assert "Seccomp:\t0" in plain.stdout.splitlines(), plain.stdout
    assert "unshare exit 0" in plain.stdout, plain.stdout


def test_docker_custom_profile_under_pyrun_and_runc(pyrun, bundle: Bundle, tmp_path: Path,
                                                     docker_chmod_run: DockerRun) -> None:
    seccomp = docker_chmod_run.config["linux"]["seccomp"]
    print(profile_summary(seccomp))
    assert seccomp["defaultAction"] == "SCMP_ACT_ALLOW"
    denied = {n for rule in seccomp["syscalls"] if rule["action"] == "SCMP_ACT_ERRNO"
              for n in rule["names"]}
    assert {"chmod", "fchmod", "fchmodat", "fchmodat2"} <= denied
    assert f"chmod: /tmp/x: {EPERM_TEXT}" in docker_chmod_run.output, docker_chmod_run.output

    adopt_docker_config(bundle, docker_chmod_run.config)
    got = run_pyrun(pyrun, bundle, CHMOD_SCRIPT)
    assert got.returncode == 0, f"pyrun failed under Docker's chmod profile:\n{got.stderr}"
    out = got.stdout
    assert f"chmod: /tmp/x: {EPERM_TEXT}" in out, out
    assert "chmod exit 1" in out and "ok" in out.splitlines(), out
    assert out == docker_chmod_run.output, f"pyrun:\n{out}\ndocker:\n{docker_chmod_run.output}"

    ref = run_runc(bundle, tmp_path, CHMOD_SCRIPT)
    assert ref.returncode == 0, ref.stderr
    assert out == ref.stdout, f"pyrun:\n{out}\nrunc:\n{ref.stdout}"
