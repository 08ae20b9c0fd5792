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
    },
    "pyrun": {},
}
