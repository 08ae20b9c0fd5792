"""Escapes through the files pyrun mounts over: the maskedPaths source
(CVE-2025-31133) and the /dev/console target (CVE-2025-52565 class).

Each test performs the published attack against real containers and looks at
what the container, and the host, see afterwards."""
from __future__ import annotations

import json
import os
import pty
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PYRUN
from test_terminal import listen, read_pty

REFUSED = "create /dev/console mount target: open /dev/console: too many levels of symbolic links"


def _mounts_at(pid: int, *points: str) -> dict[str, list[str]]:
    """{mount point: [fstype, ...]} of the process's mount table, for `points`."""
    found: dict[str, list[str]] = {p: [] for p in points}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        point = left.split()[4]
        if point in found:
            found[point].append(right.split()[0])
    return found


def _bind_dev(bundle, source: Path) -> None:
    """/dev is `source` bind-mounted, not a fresh tmpfs: pyrun makes no device
    nodes (as runc), so the files in `source` are what it finds there."""
    mounts = bundle.config["mounts"]
    index = next(i for i, m in enumerate(mounts) if m["destination"] == "/dev")
    mounts[index] = {"destination": "/dev", "type": "bind", "source": str(source), "options": ["rbind", "rw"]}


def _describe(path: Path) -> tuple[str, str] | None:
    """What is at `path`, without following it: kind and link target or bytes."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        return ("link", os.readlink(path))
    return ("file", path.read_text())


# --- maskedPaths with a fake /dev/null (CVE-2025-31133) ----------------------

SECRET = "image-controlled bytes\n"

FAKE_NULLS = {
    "missing": None,
    "symlink-to-file": ("link", "/secret"),
    "symlink-to-proc": ("link", "/proc/sys/kernel/core_pattern"),
    "symlink-dangling": ("link", "/nowhere"),
    "regular-file": ("file", SECRET),
}

# Every masked path of the default config, read in the container: a file's
# size in bytes, a directory's number of entries.  No redirection to /dev/null
# here: with the image's /dev/null a symlink, that would write to its target.
_REPORT = r"""
for p in "$@"; do
  if [ -d "$p" ]; then echo "$p dir $(ls -A "$p" | wc -l)"
  elif [ -e "$p" ]; then echo "$p file $(cat "$p" | wc -c)"
  else echo "$p absent"; fi
done
"""


@pytest.mark.parametrize("dev", ["image-dev", "tmpfs-dev"])
@pytest.mark.parametrize("fake", list(FAKE_NULLS))
def test_masked_paths_never_use_the_images_dev_null(pyrun, bundle, dev, fake):
    """CVE-2025-31133: maskedPaths are bind mounts of /dev/null; with the
    image's /dev/null missing, a symlink (to a file of the image, to a procfs
    file, dangling) or a regular file, the masks were skipped (a missing
    source was taken for a missing target) or became binds of whatever the
    symlink named, so /proc/keys and /proc/timer_list stayed readable.

    With the protection removed (restrict.mask bind-mounting the path
    "/dev/null" of the container again, as before), every image-dev case
    failed: /proc/keys and /proc/timer_list read non-empty; "missing" and
    "symlink-dangling" left every file mask off; "symlink-to-proc" put
    the host's core_pattern there; tmpfs-dev passed (pyrun makes /dev/null)."""
    masked = bundle.config["linux"]["maskedPaths"]
    assert "/proc/keys" in masked and "/proc/timer_list" in masked
    rootfs = bundle.rootfs
    (rootfs / "secret").write_text(SECRET)
    spec = FAKE_NULLS[fake]
    if spec is not None:
        kind, value = spec
        if kind == "link":
            os.symlink(value, rootfs / "dev" / "null")
        else:
            (rootfs / "dev" / "null").write_text(value)
    if dev == "image-dev":
        _bind_dev(bundle, rootfs / "dev")
    bundle.set_args("sh", "-c", _REPORT, "report", *masked)
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    null_before = _describe(rootfs / "dev" / "null")

    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id())

    seen = {}
    for line in res.stdout.splitlines():
        path, _, rest = line.partition(" ")
        seen[path] = rest
    assert sorted(seen) == sorted(masked), res.stdout
    assert seen["/proc/keys"] == "file 0", res.stdout
    assert seen["/proc/timer_list"] == "file 0", res.stdout
    for path in masked:
        kind = "dir" if os.path.isdir(path) else "file"
        if os.path.exists(path):      # the host's procfs and sysfs are the container's too
            assert seen[path] == f"{kind} 0", (path, res.stdout)
        else:
            assert seen[path] == "absent", (path, res.stdout)
    # Nothing the image named was touched, and the host kept its own files.
    assert (rootfs / "secret").read_text() == SECRET
    assert _describe(rootfs / "dev" / "null") == null_before
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern
    st = os.stat("/dev/null")
    assert os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
