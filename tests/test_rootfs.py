"""The container's filesystem: mounts, devices, pivot, read-only and masked paths,
and mount targets that try to escape the rootfs."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import failed_run as conftest_failed_run
from waiting import eventually


def _run(pyrun, bundle, script: str, check: bool = True):
    bundle.set_args("sh", "-c", script)
    return pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=check)


def _mountinfo(out: str) -> dict[str, list[str]]:
    """destination -> [mount options, fstype, super options]"""
    table = {}
    for line in out.splitlines():
        if " - " not in line:
            continue
        left, right = line.split(" - ", 1)
        f = left.split()
        table[f[4]] = [f[5], *right.split()[:1], right.split()[2] if len(right.split()) > 2 else ""]
    return table


def test_bind_mounts_with_options(pyrun, bundle, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "from-host").write_text("hello")
    single = tmp_path / "file.txt"
    single.write_text("one file")
    bundle.config["mounts"] += [
        {"destination": "/rw", "type": "bind", "source": str(host), "options": ["rbind", "rw"]},
        {"destination": "/ro", "type": "bind", "source": str(host), "options": ["bind", "ro", "nosuid", "nodev"]},
        {"destination": "/etc/one.txt", "type": "none", "source": str(single), "options": ["bind", "ro"]},
    ]
    out = _run(pyrun, bundle, "cat /rw/from-host; echo; echo written > /rw/from-container; "
               "echo x > /ro/nope 2>/dev/null || echo ro-refused; cat /etc/one.txt; echo; "
               "cat /proc/self/mountinfo").stdout
    assert out.splitlines()[:3] == ["hello", "ro-refused", "one file"]
    assert (host / "from-container").read_text() == "written\n"
    assert not (host / "nope").exists()
    mounts = _mountinfo(out)
    assert mounts["/ro"][0].split(",")[:1] == ["ro"] and "nosuid" in mounts["/ro"][0] and "nodev" in mounts["/ro"][0]
    assert mounts["/rw"][0].startswith("rw")
    assert mounts["/etc/one.txt"][0].startswith("ro")


def test_tmpfs_data_options_and_relative_destination(pyrun, bundle):
    bundle.config["mounts"] += [
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "noexec", "mode=1770", "size=1m"]},
        {"destination": "data", "type": "tmpfs", "source": "tmpfs"},
    ]
    out = _run(pyrun, bundle, "stat -c %a /scratch; cat /proc/self/mountinfo").stdout
    assert out.splitlines()[0] == "1770"
    mounts = _mountinfo(out)
    assert mounts["/scratch"][1] == "tmpfs" and "noexec" in mounts["/scratch"][0]
    assert "size=1024k" in mounts["/scratch"][2]
    assert mounts["/data"][1] == "tmpfs"      # relative destinations are relative to /


def test_tmpfs_over_an_existing_directory_takes_its_mode(pyrun, bundle):
    """runc 1.2+ (run.bats "runc run with tmpfs", mounts.bats "tmpfs mount mode= inherit"):
    no mode= given, an existing mountpoint's mode (special bits too) is the tmpfs's; an explicit
    mode= still wins; a new mountpoint keeps tmpfs's 1777. Before: 1777 for all three."""
    for name, mode in (("inherit", 0o6771), ("explicit", 0o710)):
        (bundle.rootfs / name).mkdir()
        os.chmod(bundle.rootfs / name, mode)
    bundle.config["mounts"] += [
        {"destination": "/inherit", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
        {"destination": "/explicit", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1500"]},
        {"destination": "/fresh", "type": "tmpfs", "source": "tmpfs"},
    ]
    out = _run(pyrun, bundle, "stat -c %a /inherit /explicit /fresh").stdout
    assert out.splitlines() == ["6771", "1500", "1777"]


def test_tmpcopyup_starts_the_tmpfs_with_the_covered_content(pyrun, bundle):
    """runc's tmpcopyup (mounts.bats "runc run [tmpcopyup]", runc 1.4.3 alike):
    the tmpfs holds a copy of what the directory had (owners, modes with the
    special bits, symlinks as links), writes stay in the tmpfs, and `ro` is
    put on after the copy. Before: an empty tmpfs."""
    for top in ("dir1", "ro1"):
        base = bundle.rootfs / top
        (base / "dir2").mkdir(parents=True)
        os.chmod(base / "dir2", 0o777)
        os.chown(base / "dir2", 1000, 1001)
        (base / "dir2" / "f").write_text("image content\n")
        os.chown(base / "dir2" / "f", 12, 34)
        os.chmod(base / "dir2" / "f", 0o4755)
        os.symlink("dir2/f", base / "link")
    bundle.config["mounts"] += [
        {"destination": "/dir1", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]},
        {"destination": "/ro1", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "ro", "nosuid"]},
    ]
    out = _run(pyrun, bundle, "stat -c '%a %u %g' /dir1/dir2 /dir1/dir2/f; readlink /dir1/link; cat /dir1/link; "
               "echo new > /dir1/dir2/new; cat /dir1/dir2/new; stat -c '%a %u %g' /ro1/dir2/f; "
               "echo x > /ro1/new 2>/dev/null || echo ro-refused; cat /proc/self/mountinfo").stdout
    assert out.splitlines()[:7] == ["777 1000 1001", "4755 12 34", "dir2/f", "image content", "new",
                                   "4755 12 34", "ro-refused"]
    mounts = _mountinfo(out)
    assert mounts["/dir1"][1] == "tmpfs" and mounts["/ro1"][1] == "tmpfs"
    assert mounts["/ro1"][0].split(",")[0] == "ro" and "nosuid" in mounts["/ro1"][0]
    assert not (bundle.rootfs / "dir1" / "dir2" / "new").exists()     # the write stayed in the tmpfs


def test_tmpcopyup_copies_symlinks_never_their_host_targets(pyrun, bundle, tmp_path):
    """A hostile image puts symlinks to host paths (a file and a directory) in
    a directory a tmpcopyup tmpfs covers: the copy runs before pivot_root, in
    the host's view, so following them would put host content into the
    container. Checked: with the copy following symlinks (entry.stat() and
    os.open without O_NOFOLLOW), the container read the host secret."""
    secret = tmp_path / "host-secret"
    secret.write_text("host only\n")
    secret_dir = tmp_path / "host-dir"
    secret_dir.mkdir()
    (secret_dir / "inner").write_text("host only too\n")
    (bundle.rootfs / "vol").mkdir()
    os.symlink(str(secret), bundle.rootfs / "vol" / "file-link")
    os.symlink(str(secret_dir), bundle.rootfs / "vol" / "dir-link")
    bundle.config["mounts"] += [
        {"destination": "/vol", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]},
    ]
    out = _run(pyrun, bundle, "readlink /vol/file-link; readlink /vol/dir-link; cat /vol/file-link /vol/dir-link/inner 2>&1; "
               "stat -c %F /vol/file-link").stdout
    assert "host only" not in out
    assert out.splitlines()[:2] == [str(secret), str(secret_dir)]
    assert out.splitlines()[-1] == "symbolic link"


def test_mount_targets_cannot_escape_the_rootfs(pyrun, bundle, tmp_path):
    """CVE-2021-30465 class. Two layers keep targets inside: ensure_path walks
    symlinks itself as if the rootfs were `/`, and every lookup is an openat2
    with RESOLVE_IN_ROOT. Checked: with both removed (symlinks followed by the
    kernel from the host's `/`), the tmpfs mounts land in the host directory."""
    victim = tmp_path / "host-victim"
    victim.mkdir()
    # Absolute and relative symlinks in the image, and a `..` destination.
    os.symlink(str(victim), bundle.rootfs / "abs-link")
    os.symlink("../../../../../../../../" + str(victim), bundle.rootfs / "rel-link")
    bundle.config["mounts"] += [
        {"destination": "/abs-link/a", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/rel-link/b", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/../../../../" + str(victim) + "/c", "type": "tmpfs", "source": "tmpfs"},
    ]
    out = _run(pyrun, bundle, "cat /proc/self/mountinfo").stdout
    assert list(victim.iterdir()) == []           # nothing was created or mounted on the host
    inside = bundle.rootfs / str(victim).lstrip("/")
    assert {p.name for p in inside.iterdir()} == {"a", "b", "c"}
    mounts = _mountinfo(out)
    for name in "abc":
        assert mounts[f"{victim}/{name}"][1] == "tmpfs"


def test_readonly_root_masked_and_readonly_paths(pyrun, bundle):
    bundle.config["root"]["readonly"] = True
    out = _run(pyrun, bundle,
               "touch /x 2>/dev/null && echo root-writable || echo root-ro; "
               "wc -c < /proc/keys; ls -A /sys/firmware | wc -l; "
               "echo 1 > /proc/sys/vm/overcommit_memory 2>/dev/null && echo sys-writable || echo sys-ro; "
               "cat /proc/self/mountinfo").stdout
    lines = out.splitlines()
    assert lines[:4] == ["root-ro", "0", "0", "sys-ro"]
    mounts = _mountinfo(out)
    assert mounts["/"][0].startswith("ro")
    assert mounts["/proc/sys"][0].startswith("ro")
    assert mounts["/sys/firmware"][1] == "tmpfs"


def test_masked_directories_share_one_read_only_tmpfs(pyrun, bundle):
    """runc 1.3+ (mask.bats "directories share tmpfs"): one filesystem for every masked
    directory (same st_dev), read-only in each. Before: one tmpfs each (three devices)."""
    for name in ("m1", "m2", "m3"):
        (bundle.rootfs / name).mkdir()
    bundle.config["linux"]["maskedPaths"] = ["/m1", "/m2", "/m3"]
    res = _run(pyrun, bundle, "stat -c %d /m1 /m2 /m3 / | sort -u | wc -l; "
               "for d in m1 m2 m3; do touch /$d/x 2>/dev/null && echo $d-writable || echo $d-ro; done; "
               "grep -c ' /m[123] .* - tmpfs ' /proc/self/mountinfo")
    assert res.stdout.split() == ["2", "m1-ro", "m2-ro", "m3-ro", "3"]


def test_duplicate_masked_paths_are_mounted_once(pyrun, bundle):
    """runc 1.4 (mask.bats "duplicate paths"): a path listed twice, in any
    spelling that cleans to the same path, gets one mask, not a mount
    stacked on the first. Before: /md showed 4 times in mountinfo, /mf 3."""
    (bundle.rootfs / "md").mkdir()
    (bundle.rootfs / "mf").write_text("secret\n")
    bundle.config["linux"]["maskedPaths"] = ["/md", "/mf", "/md", "/mf", "/md/", "//mf", "/./md"]
    res = _run(pyrun, bundle, "grep -c ' /md ' /proc/self/mountinfo; grep -c ' /mf ' /proc/self/mountinfo; "
               "wc -c < /mf; ls -A /md | wc -l")
    assert res.stdout.split() == ["1", "1", "0", "0"]


def test_no_pivot(pyrun, bundle):
    bundle.set_args("sh", "-c", "cat /proc/self/mountinfo; ls /")
    out = pyrun("run", "--no-pivot", "-b", str(bundle.path), pyrun.new_id()).stdout
    assert _mountinfo(out)["/"][0].startswith("rw")
    assert "bin" in out.split()


def test_default_and_configured_devices(pyrun, bundle):
    before = os.stat("/dev/null")
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1000, "gid": 1000},
        {"path": "/dev/sub/fifo", "type": "p", "fileMode": 0o640},
    ]
    out = _run(pyrun, bundle, "for d in null zero full random urandom tty mynull; do "
               "stat -c '%n %t %T %a %u' /dev/$d; done; readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdin; "
               "stat -c '%F %a' /dev/sub/fifo; echo ok > /dev/null && echo null-ok").stdout.splitlines()
    assert out[:7] == ["/dev/null 1 3 666 0", "/dev/zero 1 5 666 0", "/dev/full 1 7 666 0",
                       "/dev/random 1 8 666 0", "/dev/urandom 1 9 666 0", "/dev/tty 5 0 666 0",
                       "/dev/mynull 1 3 600 1000"]
    assert out[7:10] == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/0"]
    assert out[10] == "fifo 640"
    assert out[11] == "null-ok"
    after = os.stat("/dev/null")     # the host's node is never touched
    assert (before.st_uid, before.st_gid, stat.S_IMODE(before.st_mode)) == \
        (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode))


def test_cgroup_mount_shows_the_containers_own_cgroups(pyrun, bundle):
    out = _run(pyrun, bundle, "cat /proc/self/cgroup; ls /sys/fs/cgroup; "
               "cat /sys/fs/cgroup/pids/cgroup.procs").stdout.splitlines()
    cgroup_lines = [line for line in out if line.count(":") >= 2]
    assert cgroup_lines and all(line.endswith(":/") for line in cgroup_lines)   # cgroup namespace
    assert "memory" in out and "pids" in out
    assert "1" in out     # the container's pid 1 is in its own pids cgroup


def test_propagation_and_rootfs_propagation(pyrun, bundle, tmp_path):
    host = tmp_path / "prop"
    host.mkdir()
    bundle.config["linux"]["rootfsPropagation"] = "private"
    bundle.config["mounts"].append({"destination": "/prop", "type": "bind", "source": str(host),
                                    "options": ["rbind", "rprivate"]})
    out = _run(pyrun, bundle, "cat /proc/self/mountinfo").stdout
    line = next(line for line in out.splitlines() if line.split()[4] == "/prop")
    assert "shared:" not in line and "master:" not in line
    assert Path(host).is_dir()


@pytest.mark.parametrize("propagation", ["rshared", "rslave", "rprivate", "shared"])
def test_recursive_rootfs_propagation_is_accepted(pyrun, bundle, propagation):
    """The recursive forms runc takes and containerd's CRI sends (rshared for
    Kubernetes' Bidirectional mountPropagation, rslave for HostToContainer).
    With (r)shared the mount holding the rootfs is shared too, and pivot_root
    refuses a new root whose parent mount is shared: seen failing ("pivot_root:
    invalid argument") without make_parent_mount_private.  The container's
    root then has the propagation asked for (the spec's reading; runc leaves it
    private), in a peer group of its own (test_shared_rootfs_propagation_reaches_not_the_host)."""
    bundle.config["linux"]["rootfsPropagation"] = propagation
    out = _run(pyrun, bundle, "cat /proc/self/mountinfo").stdout
    root = [line for line in out.splitlines() if line.split()[4] == "/"][-1]
    assert ("shared:" in root) is propagation.endswith("shared"), root
    assert ("master:" in root) is False, root          # the parent went private first: no master to follow


def test_recursive_read_only_reaches_submounts(pyrun, bundle, tmp_path):
    """`rro` is mount_setattr(AT_RECURSIVE): the submounts of an rbind become
    read-only too, where plain `ro` only reaches the top mount."""
    import subprocess
    host = tmp_path / "tree"
    (host / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "pyrun-test", str(host / "sub")], check=True)
    try:
        bundle.config["mounts"] += [
            {"destination": "/rro", "type": "bind", "source": str(host), "options": ["rbind", "rro"]},
            {"destination": "/ro", "type": "bind", "source": str(host), "options": ["rbind", "ro"]},
        ]
        out = _run(pyrun, bundle, "touch /rro/sub/x 2>/dev/null && echo rro-sub-writable || echo rro-sub-ro; "
                   "touch /ro/sub/y 2>/dev/null && echo ro-sub-writable || echo ro-sub-ro; "
                   "touch /rro/z 2>/dev/null && echo rro-top-writable || echo rro-top-ro").stdout
        assert out.split() == ["rro-sub-ro", "ro-sub-writable", "rro-top-ro"]
    finally:
        subprocess.run(["umount", str(host / "sub")], check=False)


# What runtime-tools' runtimetest checks of linux.rootfsPropagation, from inside:
# bind / (recursively) elsewhere, then mount something under /: a shared root
# shows it through the bind as well; slave and private roots do not; an
# unbindable root cannot be bound at all.
PROPAGATION_PROBE = (
    "mkdir /target /mnt2 /src; touch /src/f; "
    "mount --rbind / /target 2>&1 || exit 0; mount --bind /src /mnt2; "
    "test -e /target/mnt2/f && echo exposed || echo hidden")


def _admin(bundle) -> None:
    caps = bundle.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = sorted(set(caps.get(kind, [])) | {"CAP_SYS_ADMIN"})
    bundle.config["linux"].pop("seccomp", None)


@pytest.mark.parametrize("mode,seen", [
    ("shared", "exposed"), ("slave", "hidden"), ("private", "hidden"),
    ("unbindable", "mount: mounting / on /target failed: Invalid argument"),
])
def test_rootfs_propagation_is_the_container_roots(pyrun, bundle, mode, seen):
    """The container's / has the propagation asked for. Before: "shared"
    failed create (pivot_root: invalid argument: the rootfs's parent mount was
    shared) and "unbindable" too (the rootfs could not be bound onto itself);
    runc 1.1.5 creates "shared" but leaves the root private (hidden)."""
    _admin(bundle)
    bundle.config["linux"]["rootfsPropagation"] = mode
    assert _run(pyrun, bundle, PROPAGATION_PROBE).stdout.strip() == seen


def test_shared_rootfs_propagation_reaches_not_the_host(pyrun, bundle, tmp_path):
    """The bundle on a host mount that is shared (as on systemd hosts): with
    rootfsPropagation "shared" the container's mounts are made in peer groups
    joined with the host's, so the rootfs's own bind would appear on the host
    but for the parent mount being made private first (runc's
    rootfsParentMountPrivate). The host sees no new mount while the
    container is created."""
    import shutil
    import subprocess
    base = tmp_path / "sharedbase"
    base.mkdir()
    subprocess.run(["mount", "--bind", str(base), str(base)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(base)], check=True)
        shutil.copytree(bundle.path, base / "b", symlinks=True)
        bundle.path = base / "b"
        _admin(bundle)
        bundle.config["linux"]["rootfsPropagation"] = "shared"
        bundle.set_args("sleep", "60")
        cid = pyrun.new_id()
        pyrun("create", "-b", str(bundle.path), cid)
        try:
            under = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                     if line.split()[4].startswith(str(base))]
            assert under == [str(base)]
        finally:
            pyrun("delete", "--force", cid)
    finally:
        subprocess.run(["umount", "-l", str(base)], check=False)


def _without_mount_namespace(bundle) -> None:
    linux = bundle.config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "mount"]
    for key in ("maskedPaths", "readonlyPaths"):
        linux.pop(key, None)
    bundle.config["mounts"] = []


def test_no_mount_namespace_runs_chrooted(pyrun, bundle):
    """A config sharing the host's mount namespace: the container is chrooted
    into its rootfs, with no mount made (none is ours to undo in the host's
    namespace), and root.readonly not applied, as runc (its / is a host
    directory, no mount point). Before: 'finalize rootfs: mount: invalid
    argument: /' for any config with root.readonly."""
    _without_mount_namespace(bundle)
    bundle.config["root"]["readonly"] = True
    before = Path("/proc/self/mountinfo").read_text().count("\n")
    listing = sorted(os.listdir(bundle.rootfs))
    out = _run(pyrun, bundle, "ls /; touch /made-here && echo written").stdout.split()
    assert out == listing + ["written"]
    assert (bundle.rootfs / "made-here").is_file()
    assert Path("/proc/self/mountinfo").read_text().count("\n") == before


def test_no_mount_namespace_with_a_terminal(pyrun, bundle):
    """host-mntns.bats 'runc run [host mount ns + hooks]' (runc's default
    spec: terminal on, runc 1.4.3 passes): the rootfs has no /dev/ptmx and
    nothing is mounted in the host's namespace, so the pty is opened from the
    host's before the chroot; still no mount made. Before: 'set up console:
    no such file or directory: /dev/ptmx'."""
    _without_mount_namespace(bundle)
    bundle.config["process"]["terminal"] = True
    before = Path("/proc/self/mountinfo").read_text().count("\n")
    bundle.set_args("sh", "-c", "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo on-a-tty")
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout
    assert out.splitlines() == ["on-a-tty"]
    assert Path("/proc/self/mountinfo").read_text().count("\n") == before


@pytest.mark.parametrize("key", ["maskedPaths", "readonlyPaths"])
def test_no_mount_namespace_refuses_path_restrictions(pyrun, bundle, key):
    """Masking and read-only paths are bind mounts, which in the host's mount
    namespace would land on the host's own files: refused, in runc's words
    (runc 1.1.5 and 1.4.3: 'unable to restrict sys entries without a private
    MNT namespace'). Before: accepted, and nothing was masked."""
    _without_mount_namespace(bundle)
    bundle.config["linux"][key] = ["/proc/kcore"]
    bundle.write()
    assert conftest_failed_run(pyrun, bundle) == \
        f"pyrun run failed: linux.{key}: unable to restrict sys entries without a private MNT namespace"


def test_read_only_dev_is_populated_first(pyrun, bundle):
    """"ro" on the /dev tmpfs: mounted read-write, the devices, symlinks and
    the devpts, shm and mqueue mounts put in, then made read-only (runc's
    mounts.bats "ro /dev mount"). Before: devpts on /dev/pts failed (EROFS)."""
    dev = next(m for m in bundle.config["mounts"] if m["destination"] == "/dev")
    dev["options"].append("ro")
    out = _run(pyrun, bundle, "cat /proc/self/mountinfo; readlink /dev/ptmx; stat -c '%t:%T' /dev/null; "
               "touch /dev/x 2>&1; echo hi > /dev/null && echo null-ok; touch /dev/shm/y && echo shm-ok").stdout
    mounts = _mountinfo(out)
    assert mounts["/dev"][0].split(",")[0] == "ro"
    assert mounts["/dev/pts"][1] == "devpts" and mounts["/dev/shm"][0].split(",")[0] == "rw"
    assert out.splitlines()[-5:] == ["pts/ptmx", "1:3", "touch: /dev/x: Read-only file system",
                                     "null-ok", "shm-ok"]


def test_user_namespace_binds_sources_only_host_root_reaches(pyrun, open_bundle):
    """Bind sources behind a directory of mode 700 owned by host root: the
    container's root (host uid 100000) could never look them up; the runtime,
    host root, clones them before the init enters the user namespace, as
    runc opens its mount sources beforehand (runc bats userns.bats
    "inaccessible mounts"). Both the process and a later exec see them.
    Before: 'error mounting ...: permission denied' (EACCES)."""
    bundle = open_bundle
    private = bundle.path / "private"
    for name in ("one", "two"):
        (private / name).mkdir(parents=True)
        (private / name / "foo.txt").write_text(name + "\n")
        (bundle.rootfs / name).mkdir()
    private.chmod(0o700)
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["mounts"] += [
        {"destination": "/one", "type": "bind", "source": "private/one", "options": ["bind"]},
        {"destination": "/two", "type": "bind", "source": str(private / "two"), "options": ["rbind", "ro"]},
    ]
    bundle.set_args("sh", "-c", "cat /one/foo.txt /two/foo.txt; touch /two/x 2>&1; exec sleep 60")
    cid = pyrun.new_id()
    with open(bundle.path / "out", "w") as out:
        pyrun("run", "-d", "-b", str(bundle.path), cid, stdout=out)
    try:
        eventually(lambda: (bundle.path / "out").read_text().count("\n") == 3, what="the container's output")
        assert (bundle.path / "out").read_text().splitlines() == \
            ["one", "two", "touch: /two/x: Read-only file system"]
        assert pyrun("exec", cid, "cat", "/one/foo.txt", "/two/foo.txt").stdout.split() == ["one", "two"]
    finally:
        pyrun("delete", "--force", cid)


def _own_userns(bundle) -> None:
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.mark.parametrize("userns", [False, True], ids=["no-userns", "userns"])
def test_a_bind_source_inside_the_rootfs_is_what_earlier_entries_mounted_there(pyrun, open_bundle, userns):
    """runc 1.2+ mount order (v1.3.6 mounts.bats "mount order, container bind-mount
    source"): a source spelled with the rootfs's host path names the container's
    tree as the entries before it left it (here a host directory bound on /mnt,
    then /mnt/sub), not the host's empty directory under the rootfs; a
    destination spelled so is the container's path. The host tree sits behind a
    mode-700 directory: in a user namespace only the runtime reaches it. Before:
    /final was the rootfs's empty /mnt (cat: no such file), and the destination
    was made at rootfs/<rootfs path>/final."""
    bundle = open_bundle
    private = bundle.path / "private"
    for name in ("top", "sub"):
        (private / name).mkdir(parents=True)
        (private / name / "file").write_text(f"from {name}\n")
    (private / "top" / "sub").mkdir()
    private.chmod(0o700)
    for name in ("mnt", "final"):
        (bundle.rootfs / name).mkdir()      # in a user namespace host root's rootfs is not writable
    if userns:
        _own_userns(bundle)
    root = str(bundle.rootfs)
    bundle.config["mounts"] += [
        {"destination": "/mnt", "type": "bind", "source": str(private / "top"), "options": ["rbind"]},
        {"destination": root + "/mnt/sub", "type": "bind", "source": str(private / "sub"), "options": ["rbind"]},
        {"destination": root + "/final", "type": "bind", "source": root + "/mnt", "options": ["rbind"]},
    ]
    out = _run(pyrun, bundle, "cat /final/file /final/sub/file").stdout
    assert out.splitlines() == ["from top", "from sub"]
    assert not (bundle.rootfs / root.lstrip("/")).exists()
    assert list((bundle.rootfs / "mnt").iterdir()) == []      # the host's view is untouched


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_a_bind_source_inside_the_rootfs_never_follows_a_symlink_out(pyrun, bundle, tmp_path, link):
    """CVE-2021-30465 class, for sources: a hostile image ships a symlink (to a
    host directory's absolute path, or climbing with `..`) where the config
    names a source inside the rootfs. It is followed as if the rootfs were `/`
    (openat2 RESOLVE_IN_ROOT), so the container gets the image's directory of
    that name, never the host's. Checked: with _bind_inside opening the path
    by ordinary lookup from the rootfs directory (os.open, as runc 1.3.6's
    plain open of the host path does), the container read the host's marker
    in both cases."""
    host = tmp_path / "host-side"
    host.mkdir()
    (host / "marker").write_text("host\n")
    image_copy = bundle.rootfs / str(host).lstrip("/")
    image_copy.mkdir(parents=True)
    (image_copy / "marker").write_text("image\n")
    target = str(host) if link == "absolute" else "../../../../../../../.." + str(host)
    os.symlink(target, bundle.rootfs / "escape")
    bundle.config["mounts"] += [
        {"destination": "/seen", "type": "bind", "source": str(bundle.rootfs / "escape"), "options": ["rbind"]},
    ]
    assert _run(pyrun, bundle, "cat /seen/marker").stdout == "image\n"
    assert (host / "marker").read_text() == "host\n"


@pytest.mark.parametrize("idmap", [False, True], ids=["bind", "idmap"])
def test_a_missing_bind_source_inside_the_rootfs_fails_cleanly(pyrun, bundle, idmap):
    """Nothing mounted there and nothing in the image: one error naming the
    entry, nothing left behind (failed_run checks the state directory; the
    pyrun fixture checks mounts, processes and fds)."""
    mount = {"destination": "/final", "type": "bind", "source": str(bundle.rootfs / "nothere"), "options": ["rbind"]}
    if idmap:
        mount.update(options=["rbind", "idmap"], uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
                     gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}])
    bundle.config["mounts"].append(mount)
    bundle.write()
    msg = conftest_failed_run(pyrun, bundle)
    assert msg.startswith("pyrun run failed: unable to start container process: error during container init: "
                          f"error mounting '{bundle.rootfs}/nothere' to rootfs at '/final': ")
    assert msg.endswith("no such file or directory: nothere (step: prepare rootfs)")
