"""config-linux.md "Cgroup ownership": who owns the container's cgroup.

A container with a new user namespace, a new cgroup namespace and a
read-write "cgroup" mount at /sys/fs/cgroup gets its cgroup v2 directory
and the files the kernel lists in /sys/kernel/cgroup/delegate, owned by the
host uid its process.user.uid maps to; anything else leaves every owner
alone.  Only on pure cgroup v2 (the VM of test_cgroup_v2_vm.py): on this
hybrid host the same containers must leave every owner at 0.

Expectations come from the kernel: the init's /proc/<pid>/cgroup, the
mount table and the kernel's delegate list, never pyrun's path code.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ID_PREFIX, failed_run

pytestmark = pytest.mark.cgroup

FIRST = 100000
MAP = [{"containerID": 0, "hostID": FIRST, "size": 65536}]
PURE_V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()


def _v2_mount() -> tuple[Path, str]:
    """The cgroup2 mount (pure v2: /sys/fs/cgroup; hybrid: .../unified) and its root."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return Path(left.split()[4]), left.split()[3]
    raise AssertionError("no cgroup2 mount")


def _v2_dir(pid: int) -> Path:
    with open(f"/proc/{pid}/cgroup") as f:
        path = next(line.rstrip("\n").split(":", 2)[2] for line in f if line.startswith("0::"))
    mount, root = _v2_mount()
    if root != "/" and path.startswith(root):
        path = path[len(root):]
    return mount / path.lstrip("/")


def _delegated() -> set[str]:
    """The kernel's list (cgroups(7)'s three where the kernel has none)."""
    try:
        return set(Path("/sys/kernel/cgroup/delegate").read_text().split())
    except FileNotFoundError:
        return {"cgroup.procs", "cgroup.subtree_control", "cgroup.threads"}


def _config(bundle, uid: int = 0, userns: bool = True, rw: bool = True, cgroupns: bool = True,
            cgroups_path: str | None = None) -> None:
    config = bundle.config
    linux = config["linux"]
    config["process"]["user"]["uid"] = uid
    if userns:
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = MAP
        linux["gidMappings"] = MAP
    if not cgroupns:
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    assert any(n["type"] == "cgroup" for n in linux["namespaces"]) == cgroupns
    mount = next(m for m in config["mounts"] if m["destination"] == "/sys/fs/cgroup")
    assert mount["source"] == "cgroup" and "ro" in mount["options"]
    if rw:
        mount["options"] = [o for o in mount["options"] if o != "ro"]
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    bundle.set_args("sleep", "300")


def _create(pyrun, bundle) -> tuple[str, int]:
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    return cid, pyrun.state(cid)["pid"]


def _owners(directory: Path) -> dict[str, int]:
    """uid of the directory (".") and of every file in it."""
    out = {".": directory.stat().st_uid}
    out.update({f.name: f.stat().st_uid for f in directory.iterdir() if f.is_file()})
    return out


def _assert_untouched(pid: int) -> None:
    """Every cgroup directory of the init, and its cgroup.procs, still belongs to root."""
    d = _v2_dir(pid)
    owners = _owners(d)
    assert owners["."] == 0 and owners["cgroup.procs"] == 0, (d, owners)
    assert set(owners.values()) == {0}, (d, owners)


def _assert_delegated(directory: Path, host_uid: int) -> None:
    """The directory and the listed files that exist: host_uid, gid kept; all others: root."""
    st = directory.stat()
    assert (st.st_uid, st.st_gid) == (host_uid, 0)
    listed = _delegated()
    owners = _owners(directory)
    wrong = {n: u for n, u in owners.items() if u != (host_uid if n == "." or n in listed else 0)}
    assert not wrong, (directory, wrong)
    assert {"cgroup.procs", "cgroup.subtree_control", "cgroup.threads"} <= owners.keys()
    for name in owners:
        if name != ".":
            assert (directory / name).stat().st_gid == 0, name


@pytest.mark.parametrize("uid", [0, 1000])
def test_rw_cgroup_mount_with_own_userns_and_cgroupns_hands_the_cgroup_over(pyrun, open_bundle, uid):
    """runc's cgroup_delegation.bats, plus what it is for: the container's user
    creates a sub-cgroup and moves itself into it."""
    _config(open_bundle, uid=uid)
    cid, pid = _create(pyrun, open_bundle)
    try:
        directory = _v2_dir(pid)
        if not PURE_V2:
            _assert_untouched(pid)
            return
        _assert_delegated(directory, FIRST + uid)
        inside = pyrun("exec", cid, "stat", "-c", "%n %u", "/sys/fs/cgroup", "/sys/fs/cgroup/cgroup.procs",
                       "/sys/fs/cgroup/cgroup.max.depth").stdout
        assert dict(line.split() for line in inside.splitlines()) == {
            "/sys/fs/cgroup": str(uid), "/sys/fs/cgroup/cgroup.procs": str(uid),
            "/sys/fs/cgroup/cgroup.max.depth": "65534"}     # host root: unmapped, the overflow uid
        moved = pyrun("exec", cid, "sh", "-c", "mkdir /sys/fs/cgroup/sub && "
                      "echo $$ > /sys/fs/cgroup/sub/cgroup.procs && cat /proc/self/cgroup").stdout
        assert moved == "0::/sub\n"
        assert (directory / "sub").stat().st_uid == FIRST + uid
    finally:
        pyrun("delete", "--force", cid)


@pytest.mark.parametrize("change", ["ro mount", "inherited cgroupns"])
def test_otherwise_no_owner_changes(pyrun, open_bundle, change):
    """A read-only mount or the runtime's cgroup namespace (uid 1000, so that
    a chown would show): every owner stays root."""
    _config(open_bundle, uid=1000, rw=change != "ro mount", cgroupns=change != "inherited cgroupns")
    cid, pid = _create(pyrun, open_bundle)
    try:
        _assert_untouched(pid)
        if PURE_V2:
            inside = pyrun("exec", cid, "stat", "-c", "%u", "/sys/fs/cgroup").stdout
            assert inside == "65534\n"          # host root, unmapped in the container
    finally:
        pyrun("delete", "--force", cid)


def test_without_a_user_namespace_the_process_uid_owns_it(pyrun, open_bundle):
    """No user namespace: the host uid that "maps to" process.user.uid is that
    uid itself, and runc hands it the cgroup just the same."""
    _config(open_bundle, uid=1000, userns=False)
    cid, pid = _create(pyrun, open_bundle)
    try:
        if not PURE_V2:
            _assert_untouched(pid)
            return
        _assert_delegated(_v2_dir(pid), 1000)
        inside = pyrun("exec", cid, "stat", "-c", "%u", "/sys/fs/cgroup").stdout
        assert inside == "1000\n"
    finally:
        pyrun("delete", "--force", cid)


def test_an_unmapped_process_uid_is_refused(pyrun, open_bundle):
    """No host uid to hand the cgroup to: one line naming the field, nothing left."""
    _config(open_bundle, uid=70000)
    msg = failed_run(pyrun, open_bundle)
    assert "process.user.uid" in msg and "70000" in msg and "\n" not in msg, msg


@pytest.fixture
def busy_parent(pyrun) -> Iterator[str]:
    """A cgroup whose children cannot get any controller: it holds a process of
    ours and so does a child of it, so the kernel refuses every write to its
    cgroup.subtree_control (domain controllers: internal processes; threaded
    ones: it cannot become a thread root).  A container below it has no
    memory.* files, memory.oom.group and memory.reclaim among them.  Yields its
    name (an absolute cgroupsPath parent); removes it, and the processes,
    before pyrun's leak check."""
    name = f"{ID_PREFIX}parent-{uuid.uuid4().hex[:6]}"
    mount, _root = _v2_mount()
    parent = mount / name
    (parent / "busy").mkdir(parents=True)
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    try:
        (parent / "busy" / "cgroup.procs").write_text(str(sleepers[0].pid))
        (parent / "cgroup.procs").write_text(str(sleepers[1].pid))
        yield name
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        top = Path("/sys/fs/cgroup")
        for d in [top / name] + [h / name for h in top.iterdir() if h.is_dir() and not h.is_symlink()]:
            if d.is_dir():
                for child in d.iterdir():
                    if child.is_dir():
                        os.rmdir(child)
                os.rmdir(d)


def test_listed_files_that_do_not_exist_do_not_fail_create(pyrun, open_bundle, busy_parent):
    _config(open_bundle, cgroups_path=f"/{busy_parent}/{ID_PREFIX}ctr-{uuid.uuid4().hex[:6]}")
    cid, pid = _create(pyrun, open_bundle)
    try:
        directory = _v2_dir(pid)
        assert directory.parent.name == busy_parent
        if not PURE_V2:
            _assert_untouched(pid)
            return
        assert (directory / "cgroup.controllers").read_text().split() == []
        missing = {n for n in _delegated() if not (directory / n).exists()}
        assert "memory.oom.group" in missing, "the set-up did not leave a listed file missing"
        _assert_delegated(directory, FIRST)
    finally:
        pyrun("delete", "--force", cid)


def test_without_the_kernels_delegate_list_the_three_fallback_files_are_handed_over(pyrun, open_bundle):
    """Both kernels here have /sys/kernel/cgroup/delegate: pyrun is run in a
    mount namespace of its own where a tmpfs hides it, so the spec's
    fallback (cgroup.procs, cgroup.subtree_control, cgroup.threads) applies
    and the memory.* files the kernel would list stay root's."""
    from conftest import PYRUN
    _config(open_bundle)
    cid = pyrun.new_id()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs pyrun-t-nodelegate /sys/kernel/cgroup && test ! -e /sys/kernel/cgroup/delegate '
             '&& exec "$@"', "sh", str(PYRUN), "--root", str(pyrun.root), "create", "-b", str(open_bundle.path), cid],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        err.seek(0)
        assert proc.returncode == 0, err.read()
    try:
        pid = pyrun.state(cid)["pid"]
        if not PURE_V2:
            _assert_untouched(pid)
            return
        directory = _v2_dir(pid)
        owners = _owners(directory)
        fallback = {"cgroup.procs", "cgroup.subtree_control", "cgroup.threads"}
        assert {"memory.oom.group", "memory.reclaim"} & _delegated() & owners.keys(), owners
        wrong = {n: u for n, u in owners.items() if u != (FIRST if n == "." or n in fallback else 0)}
        assert not wrong, (directory, wrong)
    finally:
        pyrun("delete", "--force", cid)
