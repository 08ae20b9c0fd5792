#!/usr/bin/env bash
# Run pyrun's whole test suite as root (installs what is missing first), then the
# runtime-spec conformance suite and the upstream suites (runc's bats, runtime-tools),
# each against pyrun and runc (conformance/README.md). Every suite always runs: a red
# test in one never hides another's result. The exit status is non-zero if any
# failed. PYRUN_NO_CONFORMANCE=1 skips all but pytest.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${PYRUN_VENV:-$here/.venv}
PYRUN_NO_DEMO=1 "$here/install.sh" || exit
cd "$here"

"$venv/bin/python" -m pytest "$@"
pytest_rc=$?

conformance_rc=0 bats_rc=0 rtools_rc=0 critest_rc=0
if [ "${PYRUN_NO_CONFORMANCE:-}" != 1 ]; then
    "$venv/bin/python" conformance/run.py
    conformance_rc=$?
    # The field's own suites, built from ../shared/upstream (conformance/README.md):
    # runc v1.1.5's bats integration suite and the OCI runtime-tools validation
    # programs, pyrun and runc side by side, against the checked-in expected lists.
    "$venv/bin/python" conformance/upstream/bats.py
    bats_rc=$?
    "$venv/bin/python" conformance/upstream/runtime_tools.py
    rtools_rc=$?
    # critest (cri-tools 1.26.1) against containerd's CRI with pyrun, then runc, as the handler
    "$venv/bin/python" conformance/upstream/critest.py
    critest_rc=$?
fi

echo "test.sh: pytest exit $pytest_rc, conformance exit $conformance_rc," \
     "runc bats exit $bats_rc, runtime-tools exit $rtools_rc, critest exit $critest_rc"
[ "$pytest_rc" = 0 ] && [ "$conformance_rc" = 0 ] && [ "$bats_rc" = 0 ] && [ "$rtools_rc" = 0 ] &&
    [ "$critest_rc" = 0 ]
