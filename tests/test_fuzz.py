"""Fuzzed configs: generated from our schema (src/pyrun/schema) and mutations
of a valid config.  Every example either runs, or exits non-zero with ONE
error line (JSON log) that names what is wrong; never a traceback, never a
leftover (mounts, cgroups, processes, fds, state, netns, links).

PYRUN_FUZZ_EXAMPLES sets the number of examples per test (CI: the default);
bench/fuzz.py runs ten thousand and more, randomised, and reports the count.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from conftest import COUNTS, Pyrun, Snapshot, wait_for_no_leaks
from pyrun.tools.busybox_bundle import make_config

EXAMPLES = int(os.environ.get("PYRUN_FUZZ_EXAMPLES", "100"))   # per hypothesis test
RANDOM = os.environ.get("PYRUN_FUZZ_RANDOM") == "1"   # bench/fuzz.py: a new seed each run
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "src" / "pyrun" / "schema"

# No .hypothesis/ in the repo: its caches go to /tmp, and no example database.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "pyrun-hypothesis"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=list(HealthCheck), print_blob=True)

DEEP = "@@DEEP@@"      # replaced in the JSON text: nesting json.dumps itself could not write


# --- values ---------------------------------------------------------------------

NASTY_STRINGS = ["", "\x00", "a\x00b", "é✓\U0001F600\u202e", "..", "../../..", "relative/path",
                 "/", "/proc/self/fd/0", "/dev/null", "x" * 70_000, "\n", "-1", "1e400", "%s%n"]
NASTY_NUMBERS = [-1, 0, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**64),
                 10**30, 0.5, -0.0, 1e308]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from(NASTY_NUMBERS), st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(NASTY_STRINGS), st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
huge = st.sampled_from([["x"] * 50_000, {f"k{i}": i for i in range(20_000)}, DEEP])


# --- schema-driven generation -----------------------------------------------------

def _load_schemas() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.json")}


SCHEMAS = _load_schemas()


def _resolve(ref: str, current: str) -> tuple[dict, str]:
    file, _, pointer = ref.partition("#")
    file = file or current
    node: Any = SCHEMAS[file]
    for part in [p for p in pointer.split("/") if p]:
        node = node[part]
    return node, file


def from_schema(schema: dict, file: str = "config-schema.json", depth: int = 0) -> st.SearchStrategy:
    """Values shaped by one of our schemas (a subset of JSON Schema: what
    those files use); formats and patterns are approximated, which is fine:
    near misses are what a fuzzer wants."""
    if depth > 6:
        return st.just({})
    if "$ref" in schema:
        target, tfile = _resolve(schema["$ref"], file)
        return from_schema(target, tfile, depth + 1)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return st.one_of([from_schema(s, file, depth + 1) for s in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema(dict(schema, type=k), file, depth) for k in kind])
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = [k for k in schema.get("required", []) if k in props]
        optional = [k for k in props if k not in required]
        fixed = {k: from_schema(props[k], file, depth + 1) for k in required}
        extra = {k: from_schema(props[k], file, depth + 1) for k in optional}
        if not props and isinstance(schema.get("additionalProperties"), dict):
            return st.dictionaries(st.text(min_size=1, max_size=12),
                                   from_schema(schema["additionalProperties"], file, depth + 1), max_size=3)
        return st.fixed_dictionaries(fixed, optional=extra)
    if kind == "array":
        items = schema.get("items") or {}
        return st.lists(from_schema(items, file, depth + 1), min_size=schema.get("minItems", 0), max_size=3)
    if kind == "integer":
        lo, hi = schema.get("minimum", -(2**63)), schema.get("maximum", 2**64 - 1)
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi]))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.one_of(st.text(max_size=20), st.sampled_from(["/", "/tmp", "rootfs", "1.3.0", "/proc/self"]))
    return json_values


def _prop(file: str, *names: str) -> tuple[dict, str]:
    node, cur = SCHEMAS[file], file
    for name in names:
        node = node["properties"][name]
        while "$ref" in node:
            node, cur = _resolve(node["$ref"], cur)
    return node, cur


# Sections a generated value replaces in the valid base config.  cgroupsPath
# is never generated: a path naming a populated host cgroup is refused at
# create (test_hostile.py shows it), but a fuzzer must not gamble on that.
SECTIONS = {
    ("process",): _prop("config-schema.json", "process"),
    ("mounts",): (SCHEMAS["config-schema.json"]["properties"]["mounts"], "config-schema.json"),
    ("hooks",): _prop("config-schema.json", "hooks"),
    ("annotations",): _prop("config-schema.json", "annotations"),
    ("linux", "namespaces"): _prop("config-linux.json", "namespaces"),
    ("linux", "sysctl"): _prop("config-linux.json", "sysctl"),
    ("linux", "devices"): _prop("config-linux.json", "devices"),
    ("linux", "maskedPaths"): _prop("config-linux.json", "maskedPaths"),
    ("linux", "readonlyPaths"): _prop("config-linux.json", "readonlyPaths"),
    ("linux", "seccomp"): _prop("config-linux.json", "seccomp"),
    ("linux", "resources"): _prop("config-linux.json", "resources"),
    ("linux", "timeOffsets"): _prop("config-linux.json", "timeOffsets"),
}

SECTION_STRATEGIES = {path: from_schema(schema, file) for path, (schema, file) in SECTIONS.items()}


# --- the valid base and its mutations -------------------------------------------

def base_config() -> dict:
    config = make_config(["true"])
    config["root"]["path"] = "rootfs"
    return config


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in the config."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _set(config: dict, path: tuple, value: Any) -> None:
    node = config
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            node = node[part]
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)):
        node[path[-1]] = value


# Hand-picked hostile values for fields a runtime must get right.
TARGETED: list[tuple[tuple, Any]] = [
    (("root", "path"), v) for v in ("/", "..", "../..", "rootfs/../..", "/nonexistent", "", "rootfs/.", "./rootfs")
] + [
    (("mounts",), [{"destination": d, "type": "tmpfs", "source": "tmpfs"}])
    for d in ("../../../tmp/pyrun-fuzz-escape", "/../../../tmp/pyrun-fuzz-escape", "relative", "/proc/self",
              "/dev/null/x", "", "/a\x00b", "/" + "d/" * 200, "/proc", "/etc/hostname")
] + [
    (("mounts",), [{"destination": "/mnt", "type": "bind", "source": s, "options": ["rbind"]}])
    for s in ("/nonexistent", "..", "../..", "rootfs", "/proc/self/root", "/dev/null")
] + [
    (("process", "rlimits"), [rl]) for rl in (
        {"type": "RLIMIT_NOFILE", "soft": 2**64 - 1, "hard": 2**64 - 1},
        {"type": "RLIMIT_NOFILE", "soft": 2**64, "hard": 2**64},
        {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5},
        {"type": "RLIMIT_NOFILE", "soft": -1, "hard": -1},
        {"type": "RLIMIT_NOFILE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NOFILE", "soft": 2**40, "hard": 2**40},
        {"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1},
        {"type": "RLIMIT_NPROC", "soft": 0, "hard": 0},
        {"type": "RLIMIT_AS", "soft": 4096, "hard": 4096},
        {"type": "RLIMIT_NOFILE"}, {"soft": 1, "hard": 1},
    )
] + [
    (("linux", "namespaces"), ns) for ns in (
        [{"type": "pid"}, {"type": "pid"}, {"type": "mount"}],
        [{"type": "mount"}, {"type": "network", "path": "/nonexistent"}],
        [{"type": "mount"}, {"type": "network", "path": "/etc/passwd"}],
        [{"type": "mount"}, {"type": "pid", "path": "/proc/self/ns/net"}],
        [{"type": "mount"}, {"type": "bogus"}],
        [{"type": "mount"}, {"type": "user"}],
        [], [{"type": "pid"}],
    )
] + [
    (("process", "user", "uid"), v) for v in (-1, 2**32, 2**32 - 1, 65534)
] + [
    (("process", "cwd"), v) for v in ("relative", "/nonexistent/dir", "/proc/../..", "/etc/passwd", "/" + "c" * 5000)
] + [
    (("hostname",), v) for v in ("h" * 65, "a\x00b", "", "-")
] + [
    (("process", "env"), v) for v in (["A\x00B=1"], ["=x"], [""], ["PATH"], ["X=" + "y" * 200_000])
] + [
    (("process", "args"), v) for v in (["\x00"], ["/bin/\x00sh"], ["x" * 5000], [""], ["/"], ["../bin/true"],
                                        ["/etc/passwd"], ["true"] * 20_000)
] + [
    (("linux", "sysctl"), v) for v in ({"kernel.shmmax": "-1"}, {"net.ipv4.bogus": "1"},
                                       {"../../../etc": "1"}, {"kernel.hostname": "x\x00"}, {"vm.swappiness": "1"})
] + [
    (("linux", "maskedPaths"), ["../../etc", "/nonexistent", "relative", "/proc/self/../../etc"]),
    (("linux", "readonlyPaths"), ["../../etc", "/nonexistent", "relative", "/" + "r/" * 100]),
] + [
    (("linux", "devices"), [d]) for d in (
        {"path": "/dev/fuzz", "type": "c", "major": 1, "minor": 3},
        {"path": "../../dev/fuzz", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev/fuzz", "type": "x", "major": 1, "minor": 3},
        {"path": "/dev/fuzz", "type": "c", "major": -1, "minor": 3},
        {"path": "/dev/fuzz", "type": "b", "major": 2**40, "minor": 2**40},
        {"path": "/dev/null", "type": "p"},
    )
] + [
    (("process", "oomScoreAdj"), v) for v in (5000, -5000, 1000)
] + [
    (("hooks",), {"createContainer": [{"path": "/"}]}),        # found by the fuzzer: a traceback
    (("hooks",), {"createRuntime": [{"path": "/nonexistent", "timeout": -1}]}),
    (("process", "terminal"), True),
    (("process", "capabilities", "bounding"), ["CAP_BOGUS"]),
    (("process", "capabilities", "ambient"), ["CAP_SYS_ADMIN"]),
    (("annotations",), {"x": 1}),
    (("linux", "seccomp"), {"defaultAction": "SCMP_ACT_BOGUS"}),
    (("linux", "seccomp"), {"defaultAction": "SCMP_ACT_ALLOW",
                            "syscalls": [{"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]}),
    (("linux", "seccomp"), {"defaultAction": "SCMP_ACT_ALLOW",
                            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                          "args": [{"index": 10, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
    (("linux", "rootfsPropagation"), "bogus"),
    (("linux", "rootfsPropagation"), "shared"),
    (("ociVersion",), "0.0.1-bogus"),
    (("ociVersion",), "99.0.0"),
    (("linux", "uidMappings"), [{"containerID": 0, "hostID": 2**32 - 1, "size": 2**32 - 1}]),
]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict, str]:
    config = base_config()
    notes = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "delete", "unknown", "targeted", "targeted", "huge", "section"]))
        if kind == "section":
            path = draw(st.sampled_from(sorted(SECTIONS)))
            value = copy.deepcopy(draw(SECTION_STRATEGIES[path]))
        elif kind == "targeted":
            path, value = draw(st.sampled_from(TARGETED))
            value = copy.deepcopy(value)
        else:
            path = draw(st.sampled_from(_paths(config)))
            value = copy.deepcopy(draw(huge if kind == "huge" else json_values))   # never share: no cycles
        if kind == "delete":
            parent = config
            for part in path[:-1]:
                parent = parent[part]
            parent.pop(path[-1]) if isinstance(parent, (dict, list)) else None
            notes.append(f"delete {path}")
            continue
        if kind == "unknown":
            path = path + ("x-fuzz-unknown",)
        _set(config, path, value)
        notes.append(f"{kind} {path}")
    return config, "; ".join(notes)


# Bundle layouts: symlinked config.json or rootfs, rootfs = the host's /.
LAYOUTS = ["plain", "plain", "plain", "config-symlink", "rootfs-symlink", "rootfs-symlink-to-host-root",
           "rootfs-dangling", "config-is-dir", "config-not-json", "config-deep", "config-nested"]


# --- running one example ------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_rootfs(rootfs_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One rootfs shared by every example (mount targets an example creates stay)."""
    path = tmp_path_factory.mktemp("fuzz") / "rootfs"
    shutil.copytree(rootfs_template, path, symlinks=True)
    return path


def _write_bundle(base: Path, rootfs: Path, config: dict, layout: str) -> Path:
    bundle = Path(tempfile.mkdtemp(prefix="b", dir=base))
    text = json.dumps(config)
    if DEEP in text:
        text = text.replace(json.dumps(DEEP), "[" * 200_000 + "]" * 200_000)
    if layout == "config-deep":
        text = text[:-1] + ', "deep": ' + "{\"a\":" * 100_000 + "1" + "}" * 100_000 + "}"
    if layout == "config-nested":     # parses, but deeper than anything the spec has
        text = text[:-1] + ', "linux": ' + "{\"a\":" * 900 + "1" + "}" * 900 + "}"
    if layout == "config-not-json":
        text = text[: len(text) // 2]
    if layout == "config-symlink":
        (bundle / "real.json").write_text(text)
        (bundle / "config.json").symlink_to("real.json")
    elif layout == "config-is-dir":
        (bundle / "config.json").mkdir()
    else:
        (bundle / "config.json").write_text(text)
    target = {"rootfs-symlink-to-host-root": "/", "rootfs-dangling": "/nonexistent-pyrun-fuzz"}.get(layout, str(rootfs))
    (bundle / "rootfs").symlink_to(target)
    return bundle


def check_example(pyrun: Pyrun, base: Path, rootfs: Path, config: dict, layout: str, notes: str) -> None:
    """One example: `run` it (create + start + wait + delete: it must clean
    up after itself, failed or not; the fixture's `delete --force` comes only
    at the end), then prove that whatever happened, it was clean."""
    before = Snapshot.take(pyrun.root)
    bundle = _write_bundle(base, rootfs, config, layout)
    cid = pyrun.new_id()
    try:
        res = pyrun("run", "-b", str(bundle), cid, check=False, timeout=60,
                    global_args=("--log-format", "json"))
    finally:
        shutil.rmtree(bundle, ignore_errors=True)
    COUNTS["examples fuzzed"] += 1
    context = f"\nexample: layout={layout}; {notes}\nrc={res.returncode}\nstderr: {res.stderr[:3000]}"
    if "Traceback" in res.stderr + res.stdout:
        COUNTS["tracebacks"] += 1
        raise AssertionError("traceback" + context)
    assert res.returncode >= 0, "pyrun died of a signal" + context
    ours = [json.loads(line) for line in res.stderr.splitlines() if line.startswith('{"')]
    errors = [e for e in ours if e.get("level") == "error"]
    if res.returncode != 0 and errors:
        assert len(errors) == 1, "more than one error line" + context
        msg = errors[0]["msg"]
        assert msg.strip() and "\n" not in msg, "not one clear line" + context
    elif res.returncode != 0:
        # No error from pyrun: the container ran, and its process exited non-zero.
        assert not errors
    leaks = wait_for_no_leaks(pyrun.root, before)
    if leaks:     # conftest counts it once the test fails
        raise AssertionError(f"left behind: {leaks}" + context)
    assert not (pyrun.root / cid).exists(), "state directory left" + context
    assert not os.path.exists("/tmp/pyrun-fuzz-escape"), "a mount destination escaped the rootfs" + context


@pytest.fixture
def fuzz_base(tmp_path: Path) -> Path:
    return tmp_path


@FUZZ
@given(example=mutated(), layout=st.sampled_from(LAYOUTS))
def test_mutated_configs(pyrun, fuzz_base, fuzz_rootfs, example, layout):
    config, notes = example
    check_example(pyrun, fuzz_base, fuzz_rootfs, config, layout, notes)


@FUZZ
@given(section=st.sampled_from(sorted(SECTIONS)), data=st.data())
def test_schema_generated_sections(pyrun, fuzz_base, fuzz_rootfs, section, data):
    config = base_config()
    value = data.draw(SECTION_STRATEGIES[section], label=".".join(section))
    _set(config, section, value)
    check_example(pyrun, fuzz_base, fuzz_rootfs, config, "plain", f"schema {section}")


@pytest.mark.parametrize("index", range(len(TARGETED)))
def test_targeted(pyrun, fuzz_base, fuzz_rootfs, index):
    """Each hand-picked hostile value alone, every run (hypothesis may not draw it)."""
    path, value = TARGETED[index]
    config = base_config()
    _set(config, path, copy.deepcopy(value))
    check_example(pyrun, fuzz_base, fuzz_rootfs, config, "plain", f"targeted {path}={str(value)[:80]!r}")


@pytest.mark.parametrize("layout", LAYOUTS[2:])
def test_layouts(pyrun, fuzz_base, fuzz_rootfs, layout):
    check_example(pyrun, fuzz_base, fuzz_rootfs, base_config(), layout, "valid config")
