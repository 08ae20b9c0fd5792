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

# The VM modules (marker vm: qemu under TCG, ~20 minutes of CPU) run in a pytest of
# their own beside the others, whose tests mostly wait on the kernel, so the two
# overlap. Only for a whole-suite run (options only, no test named or selected);
# PYRUN_VM_APART=0 runs everything in one pytest, one module after another.
apart=${PYRUN_VM_APART:-1}
for arg in "$@"; do case $arg in -q|-v|-x|-rfEs|--durations=*) ;; *) apart=0 ;; esac; done
if [ "$apart" = 1 ]; then
    vm_out=$(mktemp -d /tmp/pyrun-vm-pytest.XXXXXX)
    # each boot's own limit, stretched: the host's tests take CPU from it
    PYRUN_VM_TIMEOUT=${PYRUN_VM_TIMEOUT:-2400} "$venv/bin/python" -m pytest -m vm \
        --basetemp "$vm_out/tmp" "$@" >"$vm_out/log" 2>&1 &
    vm_pid=$!
    trap 'kill $vm_pid 2>/dev/null' INT TERM
    "$venv/bin/python" -m pytest -m "not vm" "$@"
    pytest_rc=$?
    wait "$vm_pid"
    vm_rc=$?
    trap - INT TERM
    echo "=== the VM modules: pytest -m vm, run beside the pytest above (exit $vm_rc) ==="
    cat "$vm_out/log"
    rm -rf "$vm_out"
    [ "$pytest_rc" = 0 ] && pytest_rc=$vm_rc
else
    "$venv/bin/python" -m pytest "$@"
    pytest_rc=$?
fi

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
