"""Load pyrun's own JSON Schemas for the OCI runtime-spec (config, state, features).

The schema files live in ``src/pyrun/schema`` (a symlink to ``oci-spec/`` at the
repository root).  ``jsonschema`` and ``referencing`` are imported lazily so that
importing this module costs nothing at CLI start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from jsonschema.protocols import Validator
    from referencing import Registry

SCHEMA_DIR: Path = Path(__file__).resolve().parent.parent / "schema"

#: Public schema names and their entry-point files inside SCHEMA_DIR.
SCHEMA_FILES: dict[str, str] = {
    "config": "config-schema.json",
    "state": "state-schema.json",
    "features": "features-schema.json",
}

_registry_cache: dict[Path, tuple[Registry, dict[str, dict[str, Any]]]] = {}


def _load_registry(schema_dir: Path) -> tuple[Registry, dict[str, dict[str, Any]]]:
    """Build (once per directory) a registry holding every ``*.json`` file in *schema_dir*.

    Each file is registered under its ``$id`` (falling back to its ``file://`` URI),
    so relative ``$ref``s such as ``"defs.json#/$defs/uint32"`` resolve locally and
    nothing is ever fetched over the network.  Returns the registry and the parsed
    documents keyed by file name.
    """
    cached = _registry_cache.get(schema_dir)
    if cached is not None:
        return cached

    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    documents: dict[str, dict[str, Any]] = {}
    resources = []
    for path in sorted(schema_dir.glob("*.json")):
        with path.open(encoding="utf-8") as fh:
            contents = json.load(fh)
        documents[path.name] = contents
        uri = contents.get("$id") or path.resolve().as_uri()
        resources.append((uri, Resource.from_contents(contents, default_specification=DRAFT202012)))
    registry: Registry = Registry().with_resources(resources).crawl()
    _registry_cache[schema_dir] = (registry, documents)
    return registry, documents


def load_validator(name: str) -> Validator:
    """Return a jsonschema validator for ``"config"``, ``"state"`` or ``"features"``.

    The validator class follows the schema's ``$schema`` (Draft 2020-12) and is
    bound to a registry containing every schema file, so cross-file ``$ref``s work.
    Raises ``ValueError`` for an unknown *name*.
    """
    try:
        filename = SCHEMA_FILES[name]
    except KeyError:
        raise ValueError(
            f"unknown schema {name!r}; expected one of {sorted(SCHEMA_FILES)}"
        ) from None

    from jsonschema.validators import validator_for

    registry, documents = _load_registry(SCHEMA_DIR)
    schema = documents[filename]
    cls = validator_for(schema)
    return cls(schema, registry=registry)
