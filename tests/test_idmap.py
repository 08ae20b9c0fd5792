"""Idmapped bind mounts (`idmap`, `ridmap`, per-mount uidMappings/gidMappings).

What the container sees is read with `ls -ln` inside; where its writes land
is read with stat on the host.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import failed_run

HOST_OWNER = 1000


@pytest.fixture
def data() -> Iterator[Path]:
    """A host directory and a file in it, both owned by 1000:1000."""
    path = Path(tempfile.mkdtemp(prefix="pyrun-t-idmap-", dir="/tmp"))
    try:
        path.chmod(0o755)
        (path / "f").write_text("hi\n")
        for p in (path, path / "f"):
            os.chown(p, HOST_OWNER, HOST_OWNER)
        yield path
    finally:
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            if line.split()[4].startswith(str(path) + "/"):
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        shutil.rmtree(path, ignore_errors=True)


def _one(container_id: int, host_id: int, size: int = 1) -> list[dict[str, int]]:
    return [{"containerID": container_id, "hostID": host_id, "size": size}]


def _owners(listing: str) -> dict[str, tuple[str, str]]:
    """`ls -ln` output as {name: (uid, gid)}."""
    out = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 9 and not line.startswith("total"):
            out[fields[-1]] = (fields[2], fields[3])
    return out


def _data_mount(data: Path, options: list[str], maps: int | None = None) -> dict:
    mount = {"destination": "/data", "type": "bind", "source": str(data), "options": options}
    if maps is not None:
        mount["uidMappings"] = _one(HOST_OWNER, maps)
        mount["gidMappings"] = _one(HOST_OWNER, maps)
    return mount


def test_files_of_1000_show_as_root_and_root_writes_land_as_1000(pyrun, bundle, data):
    """No user namespace: the mount maps on-disk 1000 to 0 and back."""
    bundle.config["mounts"].append(_data_mount(data, ["rbind", "idmap"], maps=0))
    bundle.set_args("sh", "-c", "ls -ln /data; touch /data/new; mkdir /data/dir; ls -ln /data")
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout
    first, _, second = out.partition("total")[2].partition("total")
    assert _owners(first) == {"f": ("0", "0")}
    assert _owners(second) == {"f": ("0", "0"), "new": ("0", "0"), "dir": ("0", "0")}
    for name in ("f", "new", "dir"):
        st = (data / name).stat()
        assert (st.st_uid, st.st_gid) == (HOST_OWNER, HOST_OWNER), name


def test_without_the_mapping_the_same_bind_shows_1000(pyrun, bundle, data):
    bundle.config["mounts"].append(_data_mount(data, ["rbind"]))
    bundle.set_args("ls", "-ln", "/data")
    assert _owners(pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout) == {"f": ("1000", "1000")}


def _userns(bundle, first: int = 100000) -> None:
    """Container root is host `first`; /data exists (host root's rootfs is not writable then)."""
    (bundle.rootfs / "data").mkdir()
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = _one(0, first, 65536)
    linux["gidMappings"] = _one(0, first, 65536)


def test_in_a_user_namespace_the_configured_mapping_applies(pyrun, open_bundle, data):
    """Container root is host 100000; the mount shows on-disk 1000 as that id, so as 0."""
    _userns(open_bundle)
    open_bundle.config["mounts"].append(_data_mount(data, ["rbind", "idmap"], maps=100000))
    open_bundle.set_args("sh", "-c", "ls -ln /data; echo x > /data/by-root")
    out = pyrun("run", "-b", str(open_bundle.path), pyrun.new_id()).stdout
    assert _owners(out) == {"f": ("0", "0")}
    st = (data / "by-root").stat()
    assert (st.st_uid, st.st_gid) == (HOST_OWNER, HOST_OWNER)


def test_idmap_without_mappings_uses_the_containers(pyrun, open_bundle, data):
    """The container's own map: on-disk ids show unchanged inside (1000 stays 1000)."""
    _userns(open_bundle)
    data.chmod(0o777)              # the default capabilities have no CAP_DAC_OVERRIDE
    open_bundle.config["mounts"].append(_data_mount(data, ["rbind", "idmap"]))
    open_bundle.set_args("sh", "-c", "ls -ln /data; touch /data/by-root")
    out = pyrun("run", "-b", str(open_bundle.path), pyrun.new_id()).stdout
    assert _owners(out) == {"f": ("1000", "1000")}
    st = (data / "by-root").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)       # container root writes on-disk root


def test_plain_bind_in_a_user_namespace_shows_overflow_ids(pyrun, open_bundle, data):
    _userns(open_bundle)
    open_bundle.config["mounts"].append(_data_mount(data, ["rbind"]))
    open_bundle.set_args("ls", "-ln", "/data")
    assert _owners(pyrun("run", "-b", str(open_bundle.path), pyrun.new_id()).stdout) == {"f": ("65534", "65534")}


@pytest.mark.parametrize("option,mapped", [("idmap", False), ("ridmap", True)])
def test_ridmap_maps_the_mounts_below_and_idmap_does_not(pyrun, bundle, data, option, mapped):
    sub = data / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755,uid=1000,gid=1000", "pyrun-t-idmap", str(sub)],
                   check=True)
    (sub / "g").write_text("below\n")
    os.chown(sub / "g", HOST_OWNER, HOST_OWNER)
    bundle.config["mounts"].append(_data_mount(data, ["rbind", option], maps=0))
    bundle.set_args("ls", "-ln", "/data/sub")
    owners = _owners(pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout)
    assert owners == {"g": ("0", "0") if mapped else ("1000", "1000")}


def test_read_only_idmapped_mount(pyrun, bundle, data):
    bundle.config["mounts"].append(_data_mount(data, ["rbind", "idmap", "ro"], maps=0))
    bundle.set_args("sh", "-c", "ls -ln /data; touch /data/no; echo touch=$?")
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout
    assert _owners(out) == {"f": ("0", "0")} and "touch=1" in out
    assert not (data / "no").exists()


@pytest.mark.parametrize("change,words", [
    (lambda m: m.pop("gidMappings"), "'gidMappings' is a dependency of 'uidMappings'"),   # the schema
    (lambda m: m.update(type="tmpfs", options=["idmap"]), "only supported for bind mounts"),
    (lambda m: (m.pop("uidMappings"), m.pop("gidMappings")), "needs the container's own user namespace"),
])
def test_bad_idmap_configs_fail_cleanly(pyrun, bundle, data, change, words):
    mount = _data_mount(data, ["rbind", "idmap"], maps=0)
    change(mount)
    bundle.config["mounts"].append(mount)
    bundle.write()
    msg = failed_run(pyrun, bundle)
    assert "mounts[" in msg and words in msg


def test_features_claims_idmap_because_it_works(features):
    enabled = features["linux"]["mountExtensions"]["idmap"]["enabled"]
    assert enabled is True          # this kernel (5.12+) and root: the tests above prove it
    assert {"idmap", "ridmap"} <= set(features["mountOptions"])


@pytest.fixture
def features(state_root) -> dict:
    from conftest import Pyrun
    return json.loads(Pyrun(state_root)("features").stdout)


@pytest.mark.parametrize("userns", [False, True], ids=["no-userns", "userns"])
def test_an_idmapped_source_inside_the_rootfs_is_the_earlier_mount(pyrun, open_bundle, data, userns):
    """runc 1.2+ mount order (v1.3.6 mounts.bats "mount order, container idmap
    source"): the source is the container's /mnt as the entry before mounted it;
    the runtime clones and maps it in the container's mount namespace. /mnt
    itself stays unmapped. Before: "open_tree: no such file or directory" (the
    copy was taken on the host, before any entry was mounted)."""
    bundle = open_bundle
    for name in ("mnt", "final"):
        (bundle.rootfs / name).mkdir()
    if userns:
        _userns(bundle)        # container root is host 100000: on-disk 1000 shows as 65534
    mapped = 100000 if userns else 0        # on-disk 1000 as the kernel sees it through the mount
    bundle.config["mounts"] += [
        {"destination": "/mnt", "type": "bind", "source": str(data), "options": ["rbind"]},
        {**_data_mount(data, ["rbind", "idmap"], maps=mapped),
         "source": str(bundle.rootfs / "mnt"), "destination": str(bundle.rootfs / "final")},
    ]
    bundle.set_args("sh", "-c", "ls -ln /mnt; echo --; ls -ln /final")
    plain, _, idmapped = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout.partition("--\n")
    assert _owners(plain) == {"f": ("65534", "65534") if userns else ("1000", "1000")}
    assert _owners(idmapped) == {"f": ("0", "0")}


def test_idmap_without_mappings_in_a_joined_user_namespace_takes_its_mapping(pyrun, open_bundle, data):
    """runc takes the joined namespace's mapping (v1.3.6 idmap.bats "idmap mount
    (idmap flag, implied mapping, userns join)"): on-disk ids show unchanged
    inside, container root writes on-disk root. Before: "mounts[N] (/data):
    idmap without uidMappings/gidMappings needs the container's own user
    namespace mappings"."""
    bundle = open_bundle
    _userns(bundle)
    data.chmod(0o777)              # the default capabilities have no CAP_DAC_OVERRIDE
    bundle.set_args("sleep", "300")
    target = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), target)
    try:
        userns = f"/proc/{pyrun.state(target)['pid']}/ns/user"
        bundle.join_namespace("user", userns)
        linux = bundle.config["linux"]
        del linux["uidMappings"], linux["gidMappings"]
        bundle.config["mounts"].append(_data_mount(data, ["rbind", "idmap"]))
        bundle.set_args("sh", "-c", "readlink /proc/self/ns/user; ls -ln /data; touch /data/by-root")
        out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout
        assert out.splitlines()[0] == os.readlink(userns)
        assert _owners(out) == {"f": ("1000", "1000")}
        st = (data / "by-root").stat()
        assert (st.st_uid, st.st_gid) == (0, 0)
    finally:
        pyrun("delete", "-f", target)
