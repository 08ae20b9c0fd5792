#!/usr/bin/env bash
# Run pyrun's whole test suite as root (installs what is missing first), then the
# runtime-spec conformance suite (conformance/README.md) against pyrun and runc.
# Both suites always run: a red test in one never hides the other's result. The
# exit status is non-zero if either failed. PYRUN_NO_CONFORMANCE=1 skips the second.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${PYRUN_VENV:-$here/.venv}
PYRUN_NO_DEMO=1 "$here/install.sh" || exit
cd "$here"

"$venv/bin/python" -m pytest "$@"
pytest_rc=$?

conformance_rc=0
if [ "${PYRUN_NO_CONFORMANCE:-}" != 1 ]; then
    "$venv/bin/python" conformance/run.py
    conformance_rc=$?
fi

echo "test.sh: pytest exit $pytest_rc, conformance exit $conformance_rc"
[ "$pytest_rc" = 0 ] && [ "$conformance_rc" = 0 ]
