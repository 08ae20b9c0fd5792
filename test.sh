#!/usr/bin/env bash
# Run pyrun's whole test suite as root (installs what is missing first), then conformance/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${PYRUN_VENV:-$here/.venv}
PYRUN_NO_DEMO=1 "$here/install.sh"
cd "$here"
"$venv/bin/python" -m pytest "$@"
# Then the runtime-spec conformance suite against pyrun and Debian's runc
# (conformance/README.md); PYRUN_NO_CONFORMANCE=1 skips it.
[ "${PYRUN_NO_CONFORMANCE:-}" = 1 ] || exec "$venv/bin/python" conformance/run.py
