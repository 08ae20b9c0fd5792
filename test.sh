#!/usr/bin/env bash
# Run pyrun's whole test suite as root (installs what is missing first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${PYRUN_VENV:-$here/.venv}
PYRUN_NO_DEMO=1 "$here/install.sh"
cd "$here"
exec "$venv/bin/python" -m pytest "$@"
