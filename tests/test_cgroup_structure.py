"""The one cgroup interface, enforced on the source (no container needed).

Outside cgroups/ a container's cgroup is a `Cgroup` from cgroups/manager.py:
no other module may import a cgroups/ module (v1/v2 writers, freezer, stats,
layout...) or decode the recorded paths dict, so none can know which manager
it has.  Inside cgroups/ imports go one way (base <- implementations <-
manager): no cycles, lazy imports inside functions included.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "pyrun"
CGROUPS = "pyrun.cgroups"
PUBLIC = {"pyrun.cgroups.manager"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Every pyrun module this one imports, anywhere (function-level lazy imports
    and TYPE_CHECKING blocks included: only a guarded block's names are
    skipped, as they never run)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []          # annotations only: no import at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:     # `from pyrun.cgroups import fs` imports pyrun.cgroups.fs
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(tree, known) for name, tree in modules.items()}


def test_nothing_outside_cgroups_imports_its_internals():
    """Checked: on the tree before the Cgroup interface (3b24dd2) this fails
    with 12 leaks (create -> devices/layout/ownership/rootless, kill and pause
    -> freezer, delete/events/ps -> stats, update/launcher -> cgfile)."""
    graph = _graph()
    leaks = sorted(f"{mod} imports {dep}" for mod, deps in graph.items()
                   if not mod.startswith(CGROUPS) for dep in deps
                   if dep.startswith(CGROUPS + ".") and dep not in PUBLIC)
    assert leaks == []


def test_nothing_outside_cgroups_decodes_the_recorded_paths():
    """The {"": v2, "cpu,cpuacct": v1} dict stays inside cgroups/: state.json's
    "cgroup_paths" is read and written there only (manager.load / Cgroup.record).
    Checked: before the interface, 9 modules outside cgroups/ read it."""
    readers = sorted(p.relative_to(SRC).as_posix() for p in PACKAGE.rglob("*.py")
                     if "cgroups" not in p.relative_to(PACKAGE).parts and "cgroup_paths" in p.read_text())
    assert readers == []


def test_no_import_cycles_in_cgroups():
    """Checked: before the interface this failed on resources_v1 <-> resources_v2
    (check_usage one way, the hybrid hugetlb setter the other) and
    devices <-> ebpf (Rule one way, attach_filter the other)."""
    graph = {m: {d for d in deps if d.startswith(CGROUPS)} for m, deps in _graph().items()
             if m.startswith(CGROUPS)}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    cycles.append(" -> ".join(path + [dep]))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, path + [dep]))
    assert cycles == []


def test_every_manager_implements_the_whole_interface():
    """An implementation missing a method would fail only when a command
    reaches it; instantiating each one here makes ABC name it now."""
    from pyrun.cgroups.fs import HybridCgroup, V1Cgroup, V2Cgroup
    from pyrun.cgroups.null import NullCgroup
    from pyrun.cgroups.manager import Cgroup, load
    for cls in (V1Cgroup, V2Cgroup, HybridCgroup):
        assert isinstance(cls({"": "/nonexistent"}), Cgroup)
    assert isinstance(NullCgroup(), Cgroup)
    assert type(load({"cgroup_paths": {}})) is NullCgroup
    assert type(load({"cgroup_paths": {"": "/a"}})) is V2Cgroup
    assert type(load({"cgroup_paths": {"cpu": "/a"}})) is V1Cgroup
    assert type(load({"cgroup_paths": {"": "/a", "cpu": "/b"}})) is HybridCgroup
