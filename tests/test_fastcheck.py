"""spec/fastcheck.py against jsonschema: it may only say "valid" when jsonschema does.

create skips jsonschema when fastcheck accepts a config, so a wrong "valid"
would let a bad config through. Every config here is judged by both: the
upstream fixtures, test_schema_agreement's cases, and every single-node
mutation of pyrun's default config (each value replaced by values of every
JSON type, each key removed).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import REPO, SHARED
from pyrun.spec import fastcheck
from pyrun.spec.schema_loader import load_validator
from pyrun.spec.template import default_spec
from pyrun.tools.busybox_bundle import make_config
from test_schema_agreement import STRICT_CASES

SCHEMA_DIR = str(REPO / "src" / "pyrun" / "schema")
FIXTURES = SHARED / "oci-runtime-spec" / "schema" / "test" / "config"
REPLACEMENTS = [None, True, 0, -1, 2**64, 1.5, "", "x", "/abs", [], [""], {}, {"x": 1}]


def jsonschema_valid(config: Any) -> bool:
    return not any(True for _ in load_validator("config").iter_errors(config))


def judged(config: Any) -> tuple[bool, bool]:
    return fastcheck.is_valid(config, SCHEMA_DIR), jsonschema_valid(config)


def mutations(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, replacement) for every node; a replacement of `...` removes the key."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,), ...
            yield from mutations(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from mutations(v, path + (i,))
    for r in REPLACEMENTS:
        if path:
            yield path, r


def mutated(config: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    node = out
    for p in path[:-1]:
        node = node[p]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(value)
    return out


def test_runtime_configs_take_the_fast_path():
    """What pyrun itself writes must not need jsonschema (else nothing is gained)."""
    for config in (default_spec(), make_config(["sh"])):
        assert judged(config) == (True, True)


def test_never_valid_where_jsonschema_is_not_on_mutations():
    base = default_spec()
    base["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2}]
    base["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}
    base["hooks"] = {"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]}
    wrong, missed = [], []
    for path, value in mutations(base):
        fast, slow = judged(mutated(base, path, value))
        if fast and not slow:
            wrong.append((path, value))
        elif slow and not fast:
            missed.append((path, value))
    assert not wrong, f"fastcheck accepted configs jsonschema rejects: {wrong[:10]}"
    assert not missed, f"valid configs that missed the fast path: {missed[:10]}"


@pytest.mark.parametrize("case", [c for c in STRICT_CASES if c[1] == "config"], ids=lambda c: c[0])
def test_agrees_on_schema_cases(case):
    _id, _kind, document, _valid = case
    fast, slow = judged(document)
    assert fast == slow, f"fast path {fast}, jsonschema {slow}"


def test_agrees_on_upstream_fixtures():
    paths = sorted(FIXTURES.glob("*/*.json"))
    if not paths:
        pytest.skip(f"no upstream fixtures at {FIXTURES}")
    checked, wrong, missed = 0, [], []
    for path in paths:
        try:
            document = json.loads(Path(path).read_text())
        except ValueError:
            continue        # some bad fixtures are not JSON at all
        fast, slow = judged(document)
        if fast and not slow:
            wrong.append(path)
        elif slow and not fast and "/bad/" not in str(path):   # a bad fixture may fail later checks
            missed.append(path)
        checked += 1
    assert checked
    assert wrong == [], "fastcheck accepted fixtures jsonschema rejects"
    assert missed == [], "valid fixtures that missed the fast path"
