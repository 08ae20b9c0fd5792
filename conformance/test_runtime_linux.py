"""runtime-linux.md: /dev symbolic links (file descriptors: only MAYs)."""
from __future__ import annotations

import pytest

from conftest import Bundle, Runtime, run_check

spec = pytest.mark.spec

LINKS = {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
         "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"}


@spec("runtimeLinuxDevSymbolicLinks", "runtimes MUST create the following symlinks if the source file exists")
def test_dev_symlinks(runtime: Runtime, bundle: Bundle) -> None:
    info = run_check(runtime, bundle, *[a for p in LINKS for a in ("--stat", p)])
    for path, target in LINKS.items():
        p = info["paths"][path]
        assert p["exists"] and p["link"] == target, (path, p)
