"""pyrun's own OCI runtime-spec schemas (oci-spec/) vs. the upstream schemas and fixtures.

For every fixture under ``<upstream schema dir>/test/<kind>/{good,bad}/`` we validate
with OUR schema and with the UPSTREAM schema and require that

* both agree on valid/invalid, and
* each matches the fixture's directory (good => valid, bad => invalid).

The upstream schema directory is the vendored runtime-spec checkout next to the
repository (``../shared/oci-runtime-spec/schema``); the tests skip when it is absent.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

REPO_ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_SCHEMA_DIR = REPO_ROOT.parent / "shared" / "oci-runtime-spec" / "schema"
FIXTURE_DIR = UPSTREAM_SCHEMA_DIR / "test"
OUR_SCHEMA_DIR = REPO_ROOT / "oci-spec"

try:
    from pyrun.spec.schema_loader import SCHEMA_DIR, load_validator
except ImportError:  # running without the package installed: use the src/ layout
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from pyrun.spec.schema_loader import SCHEMA_DIR, load_validator

KINDS = ("config", "state", "features")
UPSTREAM_ENTRY = {
    "config": "config-schema.json",
    "state": "state-schema.json",
    "features": "features-schema.json",
}

# Fixtures where the upstream schema is looser than a MUST in the spec text and our
# (stricter) schema therefore disagrees with upstream. Key: "<kind>/<good|bad>/<file>".
# Each reason must quote the spec sentence. None are needed for runtime-spec v1.3.0.
XFAIL: dict[str, str] = {}

_INVALID_JSON = object()


# --------------------------------------------------------------------------- helpers


def _discover() -> list[Any]:
    params: list[Any] = []
    if not FIXTURE_DIR.is_dir():
        return [
            pytest.param(
                None,
                None,
                None,
                id="upstream-missing",
                marks=pytest.mark.skip(
                    reason=f"upstream runtime-spec schema fixtures not found at {FIXTURE_DIR}"
                ),
            )
        ]
    for kind in KINDS:
        for verdict in ("good", "bad"):
            for path in sorted((FIXTURE_DIR / kind / verdict).glob("*.json")):
                fid = f"{kind}/{verdict}/{path.name}"
                marks = [pytest.mark.xfail(reason=XFAIL[fid], strict=True)] if fid in XFAIL else []
                params.append(pytest.param(kind, verdict == "good", path, id=fid, marks=marks))
    return params


FIXTURES = _discover()


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return _INVALID_JSON


@lru_cache(maxsize=None)
def _upstream_validator(kind: str) -> Any:
    """Validator for the upstream (draft-04, $id-less) schema, refs resolved from local files."""
    from jsonschema.validators import validator_for
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    resources = []
    for path in sorted(UPSTREAM_SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append(
            (path.resolve().as_uri(), Resource.from_contents(contents, default_specification=DRAFT4))
        )
    registry = Registry().with_resources(resources)
    entry = UPSTREAM_SCHEMA_DIR / UPSTREAM_ENTRY[kind]
    cls = validator_for(json.loads(entry.read_text(encoding="utf-8")))
    # A $ref wrapper gives the entry point its file:// base URI, so that its relative
    # refs ("defs.json#/definitions/...") resolve against the sibling files.
    return cls({"$ref": entry.resolve().as_uri()}, registry=registry)


def _verdict(validator: Any, doc: Any) -> tuple[bool, list[str]]:
    if doc is _INVALID_JSON:
        return False, ["not valid JSON"]
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return not errors, [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


# --------------------------------------------------------------------------- fixture agreement


@pytest.mark.parametrize(("kind", "expect_valid", "path"), FIXTURES)
def test_fixture_agreement(kind: str, expect_valid: bool, path: Path) -> None:
    doc = _load_json(path)
    ours, our_errors = _verdict(load_validator(kind), doc)
    theirs, their_errors = _verdict(_upstream_validator(kind), doc)

    assert ours == theirs, (
        f"our schema says {'valid' if ours else 'invalid'}, upstream says "
        f"{'valid' if theirs else 'invalid'}\n ours: {our_errors}\n upstream: {their_errors}"
    )
    expected = "valid" if expect_valid else "invalid"
    assert ours == expect_valid, f"our schema disagrees with fixture dir ({expected}): {our_errors}"
    assert theirs == expect_valid, f"upstream disagrees with fixture dir ({expected}): {their_errors}"


@pytest.mark.parametrize("kind", ["state", "features"])
def test_state_and_features_fixtures_agree(kind: str) -> None:
    """All state/features fixtures (if upstream ships any) agree, checked as one batch."""
    if not FIXTURE_DIR.is_dir():
        pytest.skip(f"upstream runtime-spec schema fixtures not found at {FIXTURE_DIR}")
    paths = sorted((FIXTURE_DIR / kind).glob("*/*.json"))
    if not paths:
        pytest.skip(f"upstream has no {kind} fixtures")
    disagreements = []
    for path in paths:
        doc = _load_json(path)
        expect_valid = path.parent.name == "good"
        ours, _ = _verdict(load_validator(kind), doc)
        theirs, _ = _verdict(_upstream_validator(kind), doc)
        if not (ours == theirs == expect_valid):
            disagreements.append(f"{path.parent.name}/{path.name}: ours={ours} upstream={theirs}")
    assert not disagreements, disagreements


# --------------------------------------------------------------------------- our schema files


def test_schema_dir_is_the_oci_spec_dir() -> None:
    assert SCHEMA_DIR.resolve() == OUR_SCHEMA_DIR.resolve()


@pytest.mark.parametrize("kind", KINDS)
def test_our_schema_is_valid_2020_12(kind: str) -> None:
    validator = load_validator(kind)
    assert isinstance(validator, jsonschema.Draft202012Validator)
    type(validator).check_schema(validator.schema)


def test_every_ref_resolves() -> None:
    """Walk every $ref in every file of our schema dir and resolve it through the registry."""
    from pyrun.spec.schema_loader import _load_registry

    registry, documents = _load_registry(SCHEMA_DIR)

    def refs(node: Any) -> Any:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    checked = 0
    for name, doc in documents.items():
        type(load_validator("config")).check_schema(doc)
        resolver = registry.resolver(base_uri=doc["$id"])
        for ref in refs(doc):
            resolver.lookup(ref)  # raises referencing.exceptions.Unresolvable on failure
            checked += 1
    assert checked > 0


def test_unknown_schema_name() -> None:
    with pytest.raises(ValueError):
        load_validator("bundle")


# --------------------------------------------------------------------------- spec MUSTs we enforce

_BASE = {"ociVersion": "1.3.0", "root": {"path": "rootfs"}}


def _cfg(**extra: Any) -> dict[str, Any]:
    return {**_BASE, **extra}


_PROC = {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}}

STRICT_CASES = [
    # (id, kind, document, valid-for-us)
    ("semver-ok-prerelease", "config", _cfg(ociVersion="1.3.0-rc.1+build.5"), True),
    ("semver-two-parts", "config", _cfg(ociVersion="1.0"), False),
    ("semver-leading-zero", "config", _cfg(ociVersion="1.03.0"), False),
    ("semver-trailing-newline", "config", _cfg(ociVersion="1.3.0\n"), False),
    ("root-required-posix", "config", {"ociVersion": "1.3.0"}, False),
    ("root-forbidden-hyperv", "config",
     {"ociVersion": "1.3.0", "root": {"path": "x"}, "windows": {"hyperv": {}}}, False),
    ("process-args-required", "config", _cfg(process={"cwd": "/"}), False),
    ("process-args-nonempty", "config", _cfg(process={**_PROC, "args": []}), False),
    ("process-windows-commandline", "config",
     _cfg(windows={}, process={"cwd": "c:\\", "commandLine": "cmd.exe"}), True),
    ("process-cwd-relative", "config", _cfg(process={**_PROC, "cwd": "tmp"}), False),
    ("capability-unknown-name", "config", _cfg(process={**_PROC, "capabilities": {"bounding": ["chown"]}}), True),
    ("capability-not-a-string", "config", _cfg(process={**_PROC, "capabilities": {"bounding": [1]}}), False),
    ("rlimit-type", "config",
     _cfg(process={**_PROC, "rlimits": [{"type": "NOFILE", "soft": 1, "hard": 1}]}), False),
    ("rlimit-duplicate", "config",
     _cfg(process={**_PROC, "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] * 2}), False),
    ("ioPriority-ok", "config",
     _cfg(process={**_PROC, "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 7}}), True),
    ("ioPriority-priority-optional", "config",
     _cfg(process={**_PROC, "ioPriority": {"class": "IOPRIO_CLASS_BE"}}), True),
    ("ioPriority-priority-range", "config",
     _cfg(process={**_PROC, "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}), False),
    ("user-gid-optional", "config", _cfg(process={**_PROC, "user": {"uid": 1}}), True),
    ("scheduler-policy", "config", _cfg(process={**_PROC, "scheduler": {"policy": "SCHED_FAST"}}), False),
    ("hook-relative-path", "config", _cfg(hooks={"poststop": [{"path": "cleanup.sh"}]}), False),
    ("hook-timeout-zero", "config", _cfg(hooks={"poststop": [{"path": "/x", "timeout": 0}]}), False),
    ("annotation-empty-key", "config", _cfg(annotations={"": "x"}), False),
    ("mount-idmap-pair", "config",
     _cfg(mounts=[{"destination": "/m", "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]), False),
    ("namespace-type", "config", _cfg(linux={"namespaces": [{"type": "net"}]}), False),
    ("namespace-duplicate", "config", _cfg(linux={"namespaces": [{"type": "pid"}, {"type": "pid"}]}), False),
    ("namespace-path-relative", "config",
     _cfg(linux={"namespaces": [{"type": "pid", "path": "proc/1/ns/pid"}]}), False),
    ("namespace-path-empty-is-none", "config",
     _cfg(linux={"namespaces": [{"type": "pid", "path": ""}]}), True),
    ("device-major-required", "config", _cfg(linux={"devices": [{"type": "c", "path": "/dev/x"}]}), False),
    ("device-fifo-no-major", "config", _cfg(linux={"devices": [{"type": "p", "path": "/dev/x"}]}), True),
    ("timeOffsets-unknown-clock", "config",
     _cfg(linux={"timeOffsets": {"realtime": {"secs": 1}}}), False),
    ("netDevices-ok", "config", _cfg(linux={"netDevices": {"eth0": {"name": "c%d"}}}), True),
    ("memBwSchema-prefix", "config", _cfg(linux={"intelRdt": {"memBwSchema": "L3:0=ff"}}), False),
    ("schemata-newline", "config", _cfg(linux={"intelRdt": {"schemata": ["L3:0=ff\nMB:0=20"]}}), False),
    ("memoryPolicy-ok", "config",
     _cfg(linux={"memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "2-3",
                                  "flags": ["MPOL_F_STATIC_NODES"]}}), True),
    ("memoryPolicy-bind-needs-nodes", "config", _cfg(linux={"memoryPolicy": {"mode": "MPOL_BIND"}}), False),
    ("memoryPolicy-local-no-nodes", "config",
     _cfg(linux={"memoryPolicy": {"mode": "MPOL_LOCAL", "nodes": "0"}}), False),
    ("weightDevice-needs-weight", "config",
     _cfg(linux={"resources": {"blockIO": {"weightDevice": [{"major": 8, "minor": 0}]}}}), False),
    ("rdma-needs-a-limit", "config", _cfg(linux={"resources": {"rdma": {"mlx5_1": {}}}}), False),
    ("memory-below-minus-one", "config", _cfg(linux={"resources": {"memory": {"limit": -2}}}), False),
    ("seccomp-metadata-needs-path", "config",
     _cfg(linux={"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}}), False),
    ("seccomp-empty-names", "config",
     _cfg(linux={"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                             "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}}), False),
    ("masked-path-relative", "config", _cfg(linux={"maskedPaths": ["proc/kcore"]}), False),
    ("unknown-properties-ignored", "config",
     _cfg(org_example_ext={"a": 1}, linux={"futureThing": True, "resources": {"newCtl": {}}}), True),
    ("state-custom-status", "state",
     {"ociVersion": "1.3.0", "id": "c1", "status": "paused", "bundle": "/b"}, True),
    ("state-relative-bundle", "state",
     {"ociVersion": "1.3.0", "id": "c1", "status": "running", "bundle": "b"}, False),
    ("features-nulls", "features",
     {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": None,
      "linux": {"seccomp": {"enabled": None, "actions": None}, "intelRdt": None}}, True),
    ("features-1.3-fields", "features",
     {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
      "linux": {"memoryPolicy": {"modes": ["MPOL_BIND"], "flags": ["MPOL_F_STATIC_NODES"]},
                "intelRdt": {"enabled": True, "schemata": True, "monitoring": True},
                "mountExtensions": {"idmap": {"enabled": True}}, "netDevices": {"enabled": True}}}, True),
    ("features-version-null", "features", {"ociVersionMin": None, "ociVersionMax": "1.3.0"}, False),
    ("features-bad-namespace", "features",
     {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"namespaces": ["net"]}}, False),
]


@pytest.mark.parametrize(
    ("kind", "doc", "valid"), [pytest.param(k, d, v, id=i) for i, k, d, v in STRICT_CASES]
)
def test_spec_requirements(kind: str, doc: dict[str, Any], valid: bool) -> None:
    ok, errors = _verdict(load_validator(kind), doc)
    assert ok == valid, errors
