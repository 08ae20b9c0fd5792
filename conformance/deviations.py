"""Where a runtime is known to deviate from the spec: test name -> why.

A listed test runs as a strict xfail for that runtime, so the suite stays as
strict as the spec and an upstream fix shows up as XPASS (then remove the entry).
Keys are the first word of the runtime's `--version` ('runc', 'pyrun', ...).
"""
from __future__ import annotations

DEVIATIONS: dict[str, dict[str, str]] = {
    "runc": {
        "test_delete_on_created_fails":
            "runc 1.1.5 `delete` (without --force) kills and removes a created container "
            "(delete.go: Created -> killContainer) instead of refusing",
        "test_hooks_run_in_order_at_their_operation":
            "runc 1.1.5 runs poststart hooks at the end of `create`, before the user process "
            "is executed (fixed in runc main after 1.2, commit 3cdda464f)",
        "test_hooks_get_the_state_on_stdin":
            "runc 1.1.5 runs poststart during `create`, so the state it passes says 'created'",
        "test_start_container_hook_failure":
            "runc 1.1.5 `start` exits 0 when a startContainer hook fails (the init reports it "
            "after the exec.fifo was already read)",
        "test_poststart_hook_failure":
            "runc 1.1.5 runs poststart during `create`: its failure fails create, not start",
        "test_poststop_failure_is_a_warning":
            "runc 1.1.5 stops at the first failing poststop hook: the remaining ones never run",
    },
    "pyrun": {},
}
