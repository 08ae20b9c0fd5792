"""Where a container's cgroup lives, as runc places it, on whatever layout the
host has (hybrid here, pure v2 in the VM of test_cgroup_v2_vm.py).

Expectations are computed from this process's own /proc/self/cgroup and the
mount table, and checked against what the kernel says of the container's
process, never against pyrun's own path code.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.cgroup


def _hierarchies() -> dict[str, tuple[str, str]]:
    """/proc/self/cgroup key ("" for cgroup2, "cpu,cpuacct", "name=systemd") ->
    (mountpoint, mount root), the first mount of each hierarchy."""
    out: dict[str, tuple[str, str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, superopts = right.split()[0], right.split()[2]
            if fstype == "cgroup2":
                key = ""
            elif fstype == "cgroup":
                opts = superopts.split(",")
                key = ",".join(o for o in opts if o in _v1_names() or o.startswith("name="))
            else:
                continue
            out.setdefault(key, (fields[4], fields[3]))
    return out


def _v1_names() -> set[str]:
    with open("/proc/cgroups") as f:
        return {line.split()[0] for line in f if not line.startswith("#")}


def _cgroups_of(pid: int | str) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {c: p for _n, c, p in (line.rstrip("\n").split(":", 2) for line in f)}


def _pure_v2() -> bool:
    return list(_cgroups_of("self")) == [""]


def _expected(inner: str) -> dict[str, str]:
    """runc's rule: an absolute path from each hierarchy's root; a relative one
    below the caller's own cgroup (on pure v2 below its parent, which can
    have controllers enabled for children because it holds no processes)."""
    own = _cgroups_of("self")
    if os.path.isabs(inner):
        return {k: os.path.normpath(inner) for k in own}
    return {k: os.path.normpath(os.path.join(os.path.dirname(p) if _pure_v2() else p, inner))
            for k, p in own.items()}


def _directory(key: str, cgpath: str) -> Path:
    mountpoint, root = _hierarchies()[key]
    rel = cgpath[len(root):] if root != "/" and cgpath.startswith(root) else cgpath
    return Path(mountpoint) / rel.lstrip("/")


def _create_and_check(pyrun, bundle, cid: str, inner: str) -> list[Path]:
    """Create (not start) the container: its init must already sit in every
    hierarchy's directory, alone (stage 1 and the child that starts the
    kernel's join early are gone, so neither counts against pids.max);
    returns those directories."""
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "cgroup"]
    bundle.set_args("cat", "/proc/self/cgroup")
    pyrun("create", "-b", str(bundle.path), cid)
    pid = pyrun.state(cid)["pid"]
    expected = _expected(inner)
    assert _cgroups_of(pid) == expected
    dirs = [_directory(k, p) for k, p in expected.items()]
    for d in dirs:
        assert (d / "cgroup.procs").read_text().split() == [str(pid)], d
    return dirs


def _start_delete_and_check(pyrun, cid: str, dirs: list[Path]) -> None:
    pyrun("start", cid)
    pyrun.wait_status(cid, "stopped")
    pyrun("delete", cid)
    left = [d for d in dirs if d.exists()]
    assert not left, f"cgroup directories left after delete: {left}"


def test_default_path_is_the_id_below_our_own_cgroup(pyrun, bundle):
    cid = pyrun.new_id()
    dirs = _create_and_check(pyrun, bundle, cid, cid)
    _start_delete_and_check(pyrun, cid, dirs)


def test_relative_path_is_below_our_own_cgroup(pyrun, bundle):
    cid = pyrun.new_id()
    inner = f"{cid}-parent/{cid}"
    bundle.config["linux"]["cgroupsPath"] = inner
    try:
        dirs = _create_and_check(pyrun, bundle, cid, inner)
        _start_delete_and_check(pyrun, cid, dirs)
    finally:
        for k, p in _expected(f"{cid}-parent").items():   # as runc, delete leaves parents
            d = _directory(k, p)
            if d.exists():
                d.rmdir()


def test_absolute_path_is_from_each_hierarchy_root(pyrun, bundle):
    cid = pyrun.new_id()
    inner = f"/{cid}"
    bundle.config["linux"]["cgroupsPath"] = inner
    dirs = _create_and_check(pyrun, bundle, cid, inner)
    # where a hierarchy is mounted at its root, the directory is exactly <mountpoint>/<id>
    rooted = {key: (d, Path(_hierarchies()[key][0]) / cid) for key, d in zip(_expected(inner), dirs)
              if _hierarchies()[key][1] == "/"}
    assert rooted, "no cgroup hierarchy is mounted at its root here"
    assert {key: got for key, (got, _want) in rooted.items()} == {key: want for key, (_got, want) in rooted.items()}
    _start_delete_and_check(pyrun, cid, dirs)


def test_cgroup_namespace_is_rooted_at_the_container_cgroup(pyrun, bundle):
    """With a cgroup namespace the container sees its own cgroup as `/`: on
    pure v2 `0::/` alone, on hybrid `/` in every hierarchy."""
    bundle.set_args("cat", "/proc/self/cgroup")
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid)
    lines = res.stdout.splitlines()
    if _pure_v2():
        assert lines == ["0::/"]
    else:
        assert lines and all(line.endswith(":/") for line in lines), lines
        assert "0::/" in lines


def test_without_cgroup_namespace_the_container_sees_its_full_path(pyrun, bundle):
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"]
                                            if n["type"] != "cgroup"]
    bundle.set_args("cat", "/proc/self/cgroup")
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid)
    seen = {c: p for _n, c, p in (line.split(":", 2) for line in res.stdout.splitlines())}
    assert seen == _expected(cid)


def test_delete_force_removes_a_running_container_cgroup(pyrun, bundle):
    cid = pyrun.new_id()
    bundle.set_args("sleep", "1000")
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    dirs = [_directory(k, p) for k, p in _expected(cid).items()]
    assert all(d.is_dir() for d in dirs)
    pyrun("delete", "--force", cid)
    assert not [d for d in dirs if d.exists()]
