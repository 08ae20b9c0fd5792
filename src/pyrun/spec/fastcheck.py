"""A quick yes to "is this config valid against our schema?", without jsonschema.

Importing jsonschema (with referencing and rpds) costs a create ~60 ms, more
than everything else it does; Docker, containerd and podman write a new
config.json for every container, so the validated-config cache never helps
them.  This walks our own schema directly, for the keywords it uses.  It only
ever answers "valid": anything it finds invalid, or a keyword it does not know,
goes to jsonschema (schema_loader), which then gives the one-line error with
its exact wording.  tests/test_fastcheck.py holds it to jsonschema's verdicts.
"""
from __future__ import annotations

import json
import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Keywords that assert nothing (annotations, containers of definitions).
_IGNORED = frozenset({"$schema", "$id", "$comment", "$defs", "definitions", "title",
                      "description", "deprecated", "default", "examples",
                      "minContains", "maxContains", "then", "else"})   # read by contains / if


class Unsupported(Exception):
    """A keyword (or form of one) this checker does not implement."""


_docs: dict[str, dict[str, Any]] = {}
_patterns: dict[str, re.Pattern[str]] = {}


def is_valid(instance: Any, schema_dir: str, name: str = "config-schema.json") -> bool:
    """True when `instance` is valid against schema_dir/name; False when invalid
    or undecided (the caller then asks jsonschema)."""
    try:
        if not _docs:
            for entry in os.scandir(schema_dir):
                if entry.name.endswith(".json"):
                    with open(entry.path, "rb") as f:
                        _docs[entry.name] = json.loads(f.read())
        return _valid(instance, _docs[name], name)
    except (Unsupported, KeyError, OSError, ValueError, TypeError, RecursionError, re.error):
        return False


def _valid(x: Any, schema: Any, doc: str) -> bool:
    if schema is True:
        return True
    if schema is False:
        return False
    if not isinstance(schema, dict):
        raise Unsupported(repr(schema))
    for key, value in schema.items():
        if key in _IGNORED:
            continue
        check = _KEYWORDS.get(key)
        if check is None:
            raise Unsupported(key)
        if not check(x, value, schema, doc):
            return False
    return True


def _ref(x: Any, ref: str, _schema: dict[str, Any], doc: str) -> bool:
    target_doc, _, pointer = ref.partition("#")
    target_doc = os.path.basename(target_doc) if target_doc else doc
    node: Any = _docs[target_doc]
    for part in pointer.split("/")[1:] if pointer else ():
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return _valid(x, node, target_doc)


def _is(x: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(x, dict)
    if kind == "array":
        return isinstance(x, list)
    if kind == "string":
        return isinstance(x, str)
    if kind == "boolean":
        return isinstance(x, bool)
    if kind == "null":
        return x is None
    if isinstance(x, bool):
        return False
    if kind == "integer":
        return isinstance(x, int) or (isinstance(x, float) and x.is_integer())
    if kind == "number":
        return isinstance(x, (int, float))
    raise Unsupported(f"type {kind}")


def _type(x: Any, kinds: Any, _s: dict[str, Any], _d: str) -> bool:
    return any(_is(x, k) for k in kinds) if isinstance(kinds, list) else _is(x, kinds)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _unbool(x: Any) -> Any:
    return ("\0true",) if x is True else ("\0false",) if x is False else x


def _equal(a: Any, b: Any) -> bool:
    """jsonschema's equality: booleans are not numbers, 1 == 1.0."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(i, j) for i, j in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return _unbool(a) == _unbool(b)


def _pattern(x: Any, pattern: str, _s: dict[str, Any], _d: str) -> bool:
    if not isinstance(x, str):
        return True
    compiled = _patterns.get(pattern)
    if compiled is None:
        compiled = _patterns[pattern] = re.compile(pattern)
    return compiled.search(x) is not None


def _properties(x: Any, props: dict[str, Any], _s: dict[str, Any], doc: str) -> bool:
    if not isinstance(x, dict):
        return True
    return all(_valid(x[k], sub, doc) for k, sub in props.items() if k in x)


def _additional(x: Any, sub: Any, schema: dict[str, Any], doc: str) -> bool:
    if not isinstance(x, dict):
        return True
    if "patternProperties" in schema:
        raise Unsupported("patternProperties")
    known = schema.get("properties") or {}
    return all(_valid(v, sub, doc) for k, v in x.items() if k not in known)


def _items(x: Any, sub: Any, _s: dict[str, Any], doc: str) -> bool:
    if isinstance(sub, list):
        raise Unsupported("items as a list")
    return not isinstance(x, list) or all(_valid(i, sub, doc) for i in x)


def _contains(x: Any, sub: Any, schema: dict[str, Any], doc: str) -> bool:
    if not isinstance(x, list):
        return True
    count = sum(1 for i in x if _valid(i, sub, doc))
    low, high = schema.get("minContains", 1), schema.get("maxContains")
    return count >= low and (high is None or count <= high)


def _if(x: Any, sub: Any, schema: dict[str, Any], doc: str) -> bool:
    branch = "then" if _valid(x, sub, doc) else "else"
    return _valid(x, schema[branch], doc) if branch in schema else True


def _dependent_required(x: Any, deps: dict[str, list[str]], _s: dict[str, Any], _d: str) -> bool:
    return not isinstance(x, dict) or all(all(r in x for r in needed)
                                          for key, needed in deps.items() if key in x)


_KEYWORDS = {
    "$ref": _ref,
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": lambda x, keys, _s, _d: not isinstance(x, dict) or all(k in x for k in keys),
    "items": _items,
    "contains": _contains,
    "const": lambda x, v, _s, _d: _equal(x, v),
    "enum": lambda x, vs, _s, _d: any(_equal(x, v) for v in vs),
    "pattern": _pattern,
    "minimum": lambda x, v, _s, _d: not _number(x) or x >= v,
    "maximum": lambda x, v, _s, _d: not _number(x) or x <= v,
    "minLength": lambda x, v, _s, _d: not isinstance(x, str) or len(x) >= v,
    "minItems": lambda x, v, _s, _d: not isinstance(x, list) or len(x) >= v,
    "not": lambda x, sub, _s, doc: not _valid(x, sub, doc),
    "allOf": lambda x, subs, _s, doc: all(_valid(x, sub, doc) for sub in subs),
    "anyOf": lambda x, subs, _s, doc: any(_valid(x, sub, doc) for sub in subs),
    "if": _if,
    "propertyNames": lambda x, sub, _s, doc: not isinstance(x, dict) or all(_valid(k, sub, doc) for k in x),
    "dependentRequired": _dependent_required,
}
