"""The cgroup tests (marker `cgroup`) and a small lifecycle subset, run again
on pure cgroup v2: Debian's kernel booted under qemu with cgroup_no_v1=all,
on this host's own filesystem (tests/vm/, docs/cgroup-v2-vm.md).

One VM boot for the module; each test checks one part of what it brought back.
Deselect with `-m "not vm"`.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from vm import harness

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[1]
LIFECYCLE = (
    "tests/test_lifecycle.py::test_run_shows_the_container_its_own_world",
    "tests/test_lifecycle.py::test_create_start_kill_delete",
    "tests/test_lifecycle.py::test_delete_refuses_live_containers_without_force",
    "tests/test_lifecycle.py::test_run_exit_status_and_signals",
    "tests/test_exec.py::test_exec_joins_every_namespace_and_the_cgroup",
    "tests/test_exec.py::test_exec_sees_what_the_container_sees",
)
# Boot ~15 s, then ~5-15 s per container test under TCG (more on a busy host).
TIMEOUT = float(os.environ.get("PYRUN_VM_TIMEOUT", 900))
# the systemd boot also starts dockerd and containerd and runs their containers
SYSTEMD_TIMEOUT = float(os.environ.get("PYRUN_VM_TIMEOUT", 1500))


def _inner_script() -> str:
    pytest_cmd = ".venv/bin/python -m pytest -p no:cacheprovider -q -rfE"
    return "\n".join([
        'out="$PYRUN_VM_OUT"',
        'cat /proc/self/mountinfo > "$out/mountinfo"',
        'cat /sys/fs/cgroup/cgroup.controllers > "$out/controllers"',
        'cat /sys/fs/cgroup/cgroup.subtree_control > "$out/subtree_control"',
        'cat /proc/self/cgroup > "$out/self_cgroup"',
        f'{pytest_cmd} -m "cgroup and not docker and not vm" tests > "$out/cgroup.out" 2>&1',
        'echo $? > "$out/cgroup.status"',
        f'{pytest_cmd} -m "not docker and not vm" {shlex.join(LIFECYCLE)} > "$out/lifecycle.out" 2>&1',
        'echo $? > "$out/lifecycle.status"',
        # conformance/'s statements that only a pure v2 host can show, against pyrun
        f'{pytest_cmd} conformance/test_config_linux.py -k "unified_enables or unified_keys_unknown or v2_cgroup_owner" '
        '--runtime "$PWD/.venv/bin/pyrun" > "$out/conformance.out" 2>&1',
        'echo $? > "$out/conformance.status"',
    ])


@pytest.fixture(scope="module")
def guest() -> harness.VmResult:
    return harness.run_for_module(_inner_script(), REPO, TIMEOUT)


def test_guest_has_cgroup_v2_only(guest):
    fstypes = [line.split(" - ")[1].split()[0] for line in guest.text("mountinfo").splitlines()]
    assert "cgroup2" in fstypes and "cgroup" not in fstypes
    controllers = set(guest.text("controllers").split())
    assert {"cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc"} <= controllers
    assert set(guest.text("subtree_control").split()) == controllers
    assert guest.text("self_cgroup") == "0::/\n"


def test_cgroup_tests_pass_on_v2(guest):
    print(guest.inner_pytest("cgroup"))


def test_lifecycle_subset_passes_on_v2(guest):
    print(guest.inner_pytest("lifecycle"))


def test_conformance_v2_statements_pass_on_v2(guest):
    summary = guest.inner_pytest("conformance")
    assert "skipped" not in summary, guest.text("conformance.out")
    print(summary)


# --- systemd as pid 1: the --systemd-cgroup driver (a second boot) ---------------------

SYSTEMD_TESTS = (
    "test_scope_holds_the_container_with_its_limits",
    "test_default_path_is_a_runc_scope_in_system_slice",
    "test_nested_slice_is_made_by_systemd",
    "test_memory_hog_is_oom_killed_in_its_scope",
)
# tests/test_systemd_engines.py: Docker and containerd's CRI with their systemd
# cgroup driver, each scenario with pyrun and with runc, in the same boot
ENGINE_TESTS = tuple(f"{name}[{rt}]" for rt in ("pyrun", "runc2") for name in (
    "test_docker_container_is_a_scope_with_its_limits",
    "test_docker_oom_hog_is_oom_killed",
)) + tuple(f"test_cri_container_is_a_scope_in_its_pod_slice[{h}]" for h in ("pyrun", "runc"))


def _systemd_script() -> str:
    # --durations: where the boot's minutes go (dockerd, containerd, each runtime)
    pytest_cmd = ".venv/bin/python -m pytest -p no:cacheprovider -v -rfE --durations=20"
    return "\n".join([
        'out="$PYRUN_VM_OUT"',
        'cat /proc/1/comm > "$out/pid1"',
        'cat /proc/self/cgroup > "$out/self_cgroup"',
        # one pytest for both modules: each start costs seconds under TCG
        f'{pytest_cmd} tests/test_cgroup_systemd.py tests/test_systemd_engines.py > "$out/systemd.out" 2>&1',
        'echo $? > "$out/systemd.status"',
        # after every delete: no container scope is loaded, no scope cgroup is left
        # (the slices above them are systemd's, as under runc; the test stops its own)
        "systemctl list-units --all --no-legend --plain --type=scope 'pyrun-*' 'runc-*' 'x-*' 'docker-*' "
        "'cri-containerd-*' > \"$out/units\"",
        "find /sys/fs/cgroup -name '*.scope' \\( -name 'pyrun-*' -o -name 'runc-*' -o -name 'x-*' "
        "-o -name 'docker-*' -o -name 'cri-containerd-*' \\) > \"$out/cgroups\"",
        "systemctl list-units --all --no-legend --plain --type=slice 'pyrun*' 'kubepods*' > \"$out/slices\"",
    ])


@pytest.fixture(scope="module")
def systemd_guest() -> harness.VmResult:
    return harness.run_for_module(_systemd_script(), REPO, SYSTEMD_TIMEOUT, before=_build_crictl, systemd=True)


def _build_crictl() -> None:
    """crictl, into the host's cache (no-op when cached): the guest reads it."""
    sys.path.insert(0, str(REPO / "conformance" / "upstream"))
    import build
    build.build("cri-tools")


def test_systemd_guest_runs_the_command_as_a_unit(systemd_guest):
    assert systemd_guest.text("pid1") == "systemd\n"
    assert systemd_guest.text("self_cgroup") == "0::/system.slice/pyrun-vm.service\n"


def test_systemd_driver_runs_containers_in_scopes(systemd_guest):
    out = systemd_guest.text("systemd.out")
    status = systemd_guest.text("systemd.status").strip()
    assert status == "0", f"inner pytest exited {status}:\n{out}"
    for name in SYSTEMD_TESTS:     # these skip where systemd is not pid 1: here they must run
        assert f"test_cgroup_systemd.py::{name} PASSED" in out, out
    print(out.strip().splitlines()[-1])


def test_docker_and_containerd_use_systemd_scopes(systemd_guest):
    out = systemd_guest.text("systemd.out")
    for name in ENGINE_TESTS:      # skipped where systemd is not pid 1 or docker is missing: here they run
        assert f"test_systemd_engines.py::{name} PASSED" in out, out


def test_systemd_driver_leaves_no_unit_and_no_cgroup(systemd_guest):
    assert systemd_guest.text("units") == ""
    assert systemd_guest.text("cgroups") == ""
    assert systemd_guest.text("slices") == ""
