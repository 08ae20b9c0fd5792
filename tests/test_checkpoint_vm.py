"""The CRIU scenarios of tests/test_checkpoint.py (marker `criu`), run where
CRIU works: Debian 12's own kernel under qemu (tests/vm/), pyrun and runc side
by side. This host's 6.18 kernel fails CRIU 3.17's kerndat check.

One VM boot for the module. Deselect with `-m "not vm"`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vm import harness

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = float(os.environ.get("PYRUN_VM_TIMEOUT", 900))


def _inner_script() -> str:
    return "\n".join([
        'out="$PYRUN_VM_OUT"',
        'criu check > "$out/criu-check.out" 2>&1; echo $? > "$out/criu-check.status"',
        '.venv/bin/python -m pytest -p no:cacheprovider -q -rfEs -m criu tests/test_checkpoint.py tests/test_podman.py '
        '> "$out/criu.out" 2>&1',
        'echo $? > "$out/criu.status"',
    ])


@pytest.fixture(scope="module")
def guest() -> harness.VmResult:
    if os.environ.get("PYRUN_IN_VM"):
        pytest.skip("already inside the VM")
    result = harness.run(_inner_script(), cwd=REPO, timeout=TIMEOUT)
    assert result.status == 0, result.describe()
    return result



def test_criu_works_on_the_guest_kernel(guest):
    assert guest.text("criu-check.status").strip() == "0", guest.text("criu-check.out")


def test_checkpoint_scenarios_pass_in_the_vm(guest):
    out = guest.text("criu.out")
    status = guest.text("criu.status").strip()
    summary = out.strip().splitlines()[-1]
    assert status == "0" and " passed" in summary, f"inner pytest exited {status}:\n{out}"
    for word in ("skipped", "failed", "error"):
        assert word not in summary, out
    print(summary)
