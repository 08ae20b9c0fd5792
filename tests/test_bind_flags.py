"""Which flags a bind mount ends up with, as current runc (1.2+; its
mounts_sshfs.bats): the source is a host tmpfs whose per-mount flags each test
sets with `mount --bind -o remount,...`; the container reads its own
/proc/self/mountinfo.  In a user namespace the kernel locks the source's ro,
nodev, nosuid, noexec and atime mode (MNT_LOCK_*): they are kept unless named,
and an entry that asks to clear one fails."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import failed_run

USERNS = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.fixture
def source(open_bundle):
    """A tmpfs of our own, mounted with every flag clear (flags set on the
    first mount would be the superblock's, which no bind mount can clear)."""
    path = open_bundle.path / "source"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "rw,suid,dev,exec,strictatime", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _host_flags(path: Path, flags: str) -> None:
    subprocess.run(["mount", "--bind", "-o", "remount,diratime,atime,strictatime", str(path)], check=True)
    subprocess.run(["mount", "--bind", "-o", f"remount,{flags}", str(path)], check=True)


def _configure(bundle, source: Path, host: str, options: list[str], userns: bool, script: str) -> None:
    _host_flags(source, host)
    (bundle.rootfs / "mnt").mkdir(exist_ok=True)    # the mapped root may not create it
    bundle.config["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(source),
                                    "options": options})
    if userns:
        linux = bundle.config["linux"]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = USERNS
        linux["gidMappings"] = USERNS
    bundle.set_args("sh", "-c", script)


def _mnt_options(pyrun, bundle, source: Path, host: str, options: list[str], userns: bool = False) -> set[str]:
    """The per-mount options of the container's /mnt (mountinfo field 6)."""
    _configure(bundle, source, host, options, userns, "cat /proc/self/mountinfo")
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout
    [fields] = [line.split() for line in out.splitlines() if line.split()[4] == "/mnt"]
    return set(fields[5].split(","))


@pytest.mark.parametrize("userns", [False, True], ids=["host", "userns"])
def test_bind_alone_keeps_every_source_flag(pyrun, open_bundle, source, userns):
    got = _mnt_options(pyrun, open_bundle, source, "ro,noexec,nosymfollow,nodiratime", ["bind"], userns)
    assert {"ro", "noexec", "nosymfollow", "nodiratime"} <= got
    assert "rw" not in got


def test_any_option_drops_the_flags_it_does_not_name(pyrun, open_bundle, source):
    """A clearing option alone ("dev") is enough: runc 1.2+, unlike mount(8).
    The atime mode, not named, stays the source's (the kernel keeps it)."""
    got = _mnt_options(pyrun, open_bundle, source, "ro,noexec,nosymfollow,nodiratime", ["bind", "dev"])
    assert "rw" in got
    assert not {"ro", "noexec", "nosymfollow"} & got
    assert "nodiratime" in got


def test_named_flags_are_the_whole_set(pyrun, open_bundle, source):
    got = _mnt_options(pyrun, open_bundle, source, "nodev,nosuid,noexec,noatime", ["bind", "ro"])
    assert "ro" in got
    assert not {"nodev", "nosuid", "noexec"} & got
    assert "noatime" in got


def test_without_user_namespace_named_clearing_flags_clear(pyrun, open_bundle, source):
    got = _mnt_options(pyrun, open_bundle, source, "ro,nosuid,nodev,noexec", ["bind", "rw", "suid", "dev", "exec"])
    assert "rw" in got
    assert not {"ro", "nosuid", "nodev", "noexec"} & got


def test_an_atime_mode_named_replaces_the_sources(pyrun, open_bundle, source):
    got = _mnt_options(pyrun, open_bundle, source, "noatime", ["bind", "relatime"])
    assert "relatime" in got and "noatime" not in got


def test_strictatime_clears_the_other_atime_flags(pyrun, open_bundle, source):
    got = _mnt_options(pyrun, open_bundle, source, "nodiratime", ["bind", "strictatime"])
    assert not {"noatime", "relatime", "nodiratime"} & got


def test_user_namespace_keeps_locked_flags_it_was_not_asked_to_clear(pyrun, open_bundle, source):
    """Setting ro works; the source's locked nodev, nosuid, noexec and noatime
    stay (the kernel refuses the exact set; the remount is retried with them)."""
    got = _mnt_options(pyrun, open_bundle, source, "nodev,nosuid,noexec,noatime", ["bind", "ro"], userns=True)
    assert {"ro", "nodev", "nosuid", "noexec", "noatime"} <= got


def test_user_namespace_clears_nosymfollow_which_is_not_lockable(pyrun, open_bundle, source):
    got = _mnt_options(pyrun, open_bundle, source, "rw,nodev,nosymfollow", ["bind", "ro", "symfollow"], userns=True)
    assert {"ro", "nodev"} <= got
    assert "nosymfollow" not in got


@pytest.mark.parametrize("host, options, message", [
    ("ro", ["bind", "rw", "nosuid"], "cannot clear locked flags ro"),
    ("nodev,nosuid,noatime", ["bind", "dev", "suid", "atime"], "cannot clear locked flags noatime,nodev,nosuid"),
    ("relatime", ["bind", "strictatime"], "cannot change locked atime flags relatime"),
    ("strictatime", ["bind", "noatime"], "cannot change locked atime flags strictatime"),
    ("noatime", ["bind", "relatime"], "cannot change locked atime flags noatime"),
], ids=["rw", "dev-suid-atime", "relatime-to-strict", "strict-to-noatime", "noatime-to-relatime"])
def test_user_namespace_refuses_to_clear_a_locked_flag(pyrun, open_bundle, source, host, options, message):
    """The entry's request cannot be met: the container is not started with
    other flags than asked (runc: 'error mounting ...: operation not permitted')."""
    _configure(open_bundle, source, host, options, True, "true")
    msg = failed_run(pyrun, open_bundle)
    assert f"to rootfs at '/mnt': {message}: operation not permitted" in msg, msg


def test_user_namespace_root_cannot_remount_a_read_only_bind_read_write(pyrun, open_bundle, source):
    """CVE-2014-5206/5207 class: root of a user namespace, holding
    CAP_SYS_ADMIN there, remounts a bind mount the host gave it read-only
    read-write (`mount -o remount,bind,rw`) and writes through it to the host.
    The kernel forbids it only on mounts it locked, those the container's
    mount namespace inherited: the runtime must bind from those, not from a
    copy it cloned in the host's namespace.  Seen failing with the parent
    cloning the sources with open_tree in the host (pyrun before this
    change): the remount succeeded and /mnt/pwned appeared on the host."""
    caps = open_bundle.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = [*caps[kind], "CAP_SYS_ADMIN"]
    _configure(open_bundle, source, "ro", ["bind", "ro"], True,
               "mount -o remount,bind,rw /mnt; echo mount=$?; echo x > /mnt/pwned; "
               "grep ' /mnt ' /proc/self/mountinfo")
    out = pyrun("run", "-b", str(open_bundle.path), pyrun.new_id()).stdout
    lines = out.splitlines()
    assert lines[0] != "mount=0", out
    assert lines[1].split()[5].split(",")[0] == "ro", out
    assert not (source / "pwned").exists()
