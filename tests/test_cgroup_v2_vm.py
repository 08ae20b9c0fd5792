"""The cgroup tests (marker `cgroup`) and a small lifecycle subset, run again
on pure cgroup v2: Debian's kernel booted under qemu with cgroup_no_v1=all,
on this host's own filesystem (tests/vm/, docs/cgroup-v2-vm.md).

One VM boot for the module; each test checks one part of what it brought back.
Deselect with `-m "not vm"`.
"""
from __future__ import annotations

import os
import shlex
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
