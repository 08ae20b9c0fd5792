"""The CRIU scenarios of tests/test_checkpoint.py (marker `criu`), and runc
v1.1.5's own checkpoint.bats, run where CRIU works: Debian 12's own kernel
under qemu (tests/vm/), pyrun and runc side by side. This host's 6.18 kernel
fails CRIU 3.17's kerndat check.

One VM boot for the module. Deselect with `-m "not vm"`.
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
TIMEOUT = float(os.environ.get("PYRUN_VM_TIMEOUT", 2700))
UPSTREAM = REPO / "conformance" / "upstream"
# checkpoint.bats' results in this VM, for both runtimes (the host's list has them failing)
EXPECTED_BATS = UPSTREAM / "expected-bats-criu.txt"
# Every test but `--lazy-pages and restore`: under TCG CRIU misses that test's 2 s wait
# for the page server, for both runtimes, and the checkpoint then waits on CRIU until
# the runner kills it (minutes of CI for a known failure).
BATS_FILTER = "^checkpoint (and|--pre-dump)"
# pyrun and Debian's runc side by side (one list); PYRUN_CRIU_BATS_RUNTIMES picks others
BATS_RUNTIMES = os.environ.get("PYRUN_CRIU_BATS_RUNTIMES", ".venv/bin/pyrun /usr/sbin/runc").split()


def _inner_script() -> str:
    return "\n".join([
        'out="$PYRUN_VM_OUT"',
        'criu check > "$out/criu-check.out" 2>&1; echo $? > "$out/criu-check.status"',
        '.venv/bin/python -m pytest -p no:cacheprovider -q -rfEs -m criu tests/test_checkpoint.py tests/test_podman.py '
        '> "$out/criu.out" 2>&1',
        'echo $? > "$out/criu.status"',
        # runc's own checkpoint.bats, from the tree the host built (_build_bats)
        'PYRUN_BATS_FILE_TIMEOUT=1500 PYRUN_BATS_HELPER_TIMEOUT=600 '
        f'.venv/bin/python conformance/upstream/bats.py --file checkpoint.bats --filter {shlex.quote(BATS_FILTER)} '
        + " ".join(f"--runtime {r}" for r in BATS_RUNTIMES)
        + f' --expected {EXPECTED_BATS.relative_to(REPO)} > "$out/bats.out" 2>&1',
        'echo $? > "$out/bats.status"',
    ])


@pytest.fixture(scope="module")
def guest() -> harness.VmResult:
    return harness.run_for_module(_inner_script(), REPO, TIMEOUT, before=_build_bats)


def _build_bats() -> None:
    """runc's bats tree, into the host's cache (a no-op when cached): the guest
    reads it there, and test.sh's bats stage reuses it afterwards."""
    sys.path.insert(0, str(UPSTREAM))
    import build
    build.build("bats")


def test_criu_works_on_the_guest_kernel(guest):
    assert guest.text("criu-check.status").strip() == "0", guest.text("criu-check.out")


def test_checkpoint_scenarios_pass_in_the_vm(guest):
    summary = guest.inner_pytest("criu")
    for word in ("skipped", "failed", "error"):
        assert word not in summary, guest.text("criu.out")
    print(summary)


def test_runc_checkpoint_bats_as_expected_in_the_vm(guest):
    """runc v1.1.5's checkpoint.bats, pyrun and runc: bats.py exits 1 on any
    result other than expected-bats-criu.txt's, or on anything left behind."""
    out = guest.text("bats.out")
    assert guest.text("bats.status").strip() == "0", out
    totals = out[out.index("tests/integration (1 files"):]
    for runtime in BATS_RUNTIMES:
        assert f"\n  {os.path.basename(runtime)} " in totals, out
    print(totals)
