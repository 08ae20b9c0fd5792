"""What each command imports: a structural guard for start-up time (no timings).

Each command runs as the installed launcher runs it (`python -IS`, src and the
venv's site-packages on sys.path), against a real container, and reports the
modules it ended up with. `state`, `start`, `kill`, `delete` and `list` must
import none of the heavy modules; `create` must not import jsonschema for a
valid config, nor pyseccomp / pyroute2 for a config that has no seccomp or
netDevices (or a seccomp profile it compiled before).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from pathlib import Path

from conftest import REPO

# Every one of these costs a command milliseconds (or tens of them) to import.
HEAVY = {
    "jsonschema", "referencing", "rpds",          # schema validation: create only, cached
    "pyroute2",                                   # netDevices only
    "pyseccomp", "pyrun.seccomp",                 # seccomp compilation: create/exec with a filter
    "ctypes", "_ctypes",                          # syscalls: the stages only
    "dataclasses", "inspect",                     # ~4 ms; pyrun.records or namedtuple instead
    "shutil", "bz2", "lzma",                      # ~2 ms; store._remove_tree instead
    "hashlib", "_hashlib",                        # OpenSSL, ~2 ms
    "pathlib", "urllib",                          # ~2 ms
    "subprocess", "threading", "traceback", "argparse", "asyncio",
    "jeepney",                                    # D-Bus: --systemd-cgroup only
    "pyrun.criu", "pyrun.container.checkpoint", "pyrun.container.restore",   # checkpoint/restore only
}

# Runs one pyrun command in-process, as the launcher does, then writes the
# names of the loaded modules to the file named by argv[1].
RUNNER = """
import sys
out = sys.argv[1]
sys.path[:0] = [{src!r}, {site!r}]
from pyrun.cli.main import main
sys.argv = ["pyrun"] + sys.argv[2:]
code = main()
modules = sorted(sys.modules)     # before json is imported to write them
import json
with open(out, "w") as f:
    json.dump({{"code": code, "modules": modules}}, f)
"""


def imports_of(tmp_path: Path, root: Path, *args: str) -> set[str]:
    out = tmp_path / f"modules-{len(list(tmp_path.iterdir()))}.json"
    code = RUNNER.format(src=str(REPO / "src"), site=sysconfig.get_path("purelib"))
    # Files, not pipes: a created container keeps its stdio open.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.run([sys.executable, "-IS", "-c", code, str(out), "--root", str(root), *args],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=60)
        log.seek(0)
        text = log.read()
    assert proc.returncode == 0, text
    report = json.loads(out.read_text())
    assert report["code"] == 0, (args, text)
    return set(report["modules"])


def heavy_in(modules: set[str], heavy: set[str] = HEAVY) -> list[str]:
    return sorted(m for m in modules if m in heavy or m.split(".")[0] in heavy)


def test_light_commands_import_nothing_heavy(pyrun, bundle, tmp_path):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    seen = {
        "state": imports_of(tmp_path, pyrun.root, "state", cid),
        "list": imports_of(tmp_path, pyrun.root, "list"),
        "start": imports_of(tmp_path, pyrun.root, "start", cid),
    }
    exec_modules = imports_of(tmp_path, pyrun.root, "exec", cid, "true")
    seen["kill"] = imports_of(tmp_path, pyrun.root, "kill", cid, "KILL")
    pyrun.wait_status(cid, "stopped")
    seen["delete"] = imports_of(tmp_path, pyrun.root, "delete", cid)
    assert not (pyrun.root / cid).exists()
    found = {command: heavy_in(modules) for command, modules in seen.items() if heavy_in(modules)}
    assert not found, f"heavy imports on light commands: {found}"
    # and further: state.json goes through state/jsonio, signals come from _signal
    extra = {c: heavy_in(seen[c], {"json", "re", "enum", "signal", "typing", "importlib"})
             for c in seen}
    assert not any(extra.values()), f"json/re/enum/signal/typing on light commands: {extra}"
    # exec loads the syscall layer, but not what only wraps C modules pyrun uses directly
    assert "pyrun.process.init" in exec_modules
    assert heavy_in(exec_modules, {"typing", "re", "enum", "socket", "signal", "json",
                                   "collections", "selectors", "copy", "dataclasses"}) == []


def test_create_skips_what_the_config_does_not_need(pyrun, bundle, tmp_path):
    """A valid config loads no jsonschema (fastcheck says yes; the second time the
    cache in the state root does); no seccomp, no netDevices: no pyseccomp, no pyroute2."""
    bundle.config["linux"].pop("seccomp", None)
    bundle.config["linux"].pop("netDevices", None)
    bundle.config["annotations"] = {"test": str(uuid.uuid4())}    # never validated before
    bundle.set_args("true")
    first, second = pyrun.new_id(), pyrun.new_id()
    modules_first = imports_of(tmp_path, pyrun.root, "create", "-b", str(bundle.path), first)
    modules_second = imports_of(tmp_path, pyrun.root, "create", "-b", str(bundle.path), second)
    for cid in (first, second):
        pyrun("delete", "-f", cid)
    # a valid config is accepted by spec/fastcheck: not even the first create loads jsonschema
    assert "jsonschema" not in modules_first and "pyrun.spec.fastcheck" in modules_first
    assert os.path.exists(pyrun.root / "@validated-configs")
    # the module lists are real: create does load the syscall layer
    assert "ctypes" in modules_second and "pyrun.process.init" in modules_second
    # ...the second never validates
    assert heavy_in(modules_second, {"jsonschema", "referencing", "rpds", "pyseccomp",
                                     "pyrun.seccomp", "pyroute2", "dataclasses", "inspect",
                                     "hashlib", "_hashlib", "pathlib", "shutil", "traceback",
                                     "threading", "subprocess", "pyrun.criu", "pyrun.container.checkpoint",
                                     "pyrun.container.restore"}) == []
    # ...nor the stdlib modules that only wrap what pyrun takes from C modules
    # (_socket, _signal, _json) or that only annotations would need
    assert heavy_in(modules_second, {"typing", "re", "enum", "socket", "signal", "json",
                                     "collections", "selectors", "copy"}) == []


def test_seccomp_filter_compiled_once_per_profile(pyrun, bundle, tmp_path):
    """A profile compiled once is reused from the state root: the next create
    loads no pyseccomp, and the reused filter is the one in force."""
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    bundle.set_args("true")
    first, second = pyrun.new_id(), pyrun.new_id()
    imports_of(tmp_path, pyrun.root, "create", "-b", str(bundle.path), first)
    modules = imports_of(tmp_path, pyrun.root, "create", "-b", str(bundle.path), second)
    for cid in (first, second):
        pyrun("delete", "-f", cid)
    assert "pyseccomp" not in modules and "pyrun.seccomp.cache" in modules
    assert list((pyrun.root / "@seccomp-filters").glob("*.bpf"))
    bundle.set_args("sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/d")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert "Seccomp:\t2" in res.stdout
    assert res.returncode != 0 and "Operation not permitted" in res.stderr
