"""Fake procfs trees and a reachable host /proc (CVE-2025-52881 class, --no-pivot).

pyrun reads and writes procfs files in the init after the config's mounts are
in place: /proc/self/setgroups (whether to call setgroups), cap_last_cap (how
far to drop the bounding set), /proc/sys/... (sysctls). A volume or an image
that puts its own files there must not steer any of it. Two defences, each
tested on its own:

* mounts whose destination resolves to /proc or below (other than procfs on
  /proc, or an lxcfs file) are refused with runc's wording, and so are proc and
  sysfs mounts through a symlink (rootfs/procsafe.py);
* the init never reads the container's /proc: stage 1 opens the runtime's own
  /proc before any namespace or mount of the container exists, checks it is a
  procfs root, and every procfs access resolves beneath it (linux/procfs.py).
  The tests of this layer use an image whose /proc is a plain directory tree,
  which no mount check can see.

Each test performs the attack for real and checks what the container process
really has, or that create refuses. How each was seen to fail without its
protection is in its docstring. runc 1.1.5 and 1.4.3 were run on the same
bundles; what they do is noted per test.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import status_fields

GROUPS = [4242, 4343]          # the caller's supplementary groups, which must not reach the container
# The busybox config's bounding set: CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29).
DEFAULT_BOUNDING = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DEFAULT_CAPBND = (1 << 5) | (1 << 10) | (1 << 29)

# What the container reports: its groups by syscall, then /proc/<pid>/status of
# a child (the init is pid 1, and /proc/1 is what the attacks cover), then dmesg.
REPORT = ("id -G; sh -c 'cat /{proc}/self/status; true' > /tmp/status; "
          "grep -E '^(Groups|CapBnd|CapEff):' /tmp/status; "
          "dmesg > /dev/null && echo DMESG-READ || echo DMESG-REFUSED")


def _docker_like(config: dict) -> None:
    """As Docker runs a container: no_new_privs off, so root's execve gains
    every capability left in the bounding set."""
    assert sorted(config["process"]["capabilities"]["bounding"]) == DEFAULT_BOUNDING
    config["process"]["noNewPrivileges"] = False


def _fake_tree(base: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    return base


def _volume(config: dict, source: Path, destination: str) -> None:
    config["mounts"].append({"destination": destination, "type": "bind", "source": str(source),
                             "options": ["rbind"]})


def _refusal(pyrun, bundle) -> str:
    """`run` with the caller's groups set, which must fail before the process
    starts and leave nothing behind: its one JSON error message."""
    bundle.write()
    cid = pyrun.new_id()
    res = pyrun("run", "-b", str(bundle.path), cid, check=False, extra_groups=GROUPS,
                global_args=("--log-format", "json"))
    assert res.returncode == 1, res
    assert res.stdout == ""
    assert not (pyrun.root / cid).exists()
    entries = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    return entries[0]["msg"]


# --- mounts into /proc are refused ---------------------------------------------

def test_volume_over_proc_self_through_image_symlink_is_refused(pyrun, bundle, tmp_path):
    """Image symlink `/data -> /proc/self`, a volume at /data holding a fake
    `setgroups` that says "deny": the volume lands on /proc/1, the init's
    /proc/self, and pyrun used to skip setgroups, so the container kept the
    caller's supplementary groups (`id -G` printed "0 4242 4343").
    Checked: with check_target returning at once, the run succeeds and the
    test fails. runc 1.1.5 and 1.4.3 both refuse ("... rootfs/proc/1" cannot
    be mounted because it is inside /proc).
    """
    os.symlink("/proc/self", bundle.rootfs / "data")
    _volume(bundle.config, _fake_tree(tmp_path / "fake", {"setgroups": "deny\n"}), "/data")
    bundle.config["process"]["args"] = ["sh", "-c", REPORT.format(proc="proc")]
    msg = _refusal(pyrun, bundle)
    assert msg.endswith(f'check proc-safety of /data mount: "{bundle.rootfs}/proc/1" '
                        "cannot be mounted because it is inside /proc (step: prepare rootfs)"), msg


@pytest.mark.parametrize("through", ["config", "image-symlink"])
def test_fake_cap_last_cap_mount_is_refused(pyrun, bundle, tmp_path, through):
    """A bind over /proc/sys/kernel (directly, or as a volume at /data with
    the image symlink `/data -> /proc/sys/kernel`) whose cap_last_cap says 31.
    pyrun used to drop the bounding set only up to 31: caps 32-40 stayed,
    root's execve made them effective, and `dmesg` read the host's kernel log
    (CapBnd 000001ff20000420, DMESG-READ).
    Checked: with check_target returning at once, both runs succeed and the
    test fails. runc 1.1.5 and 1.4.3 both refuse with the same wording.
    """
    _docker_like(bundle.config)
    fake = _fake_tree(tmp_path / "fake", {"cap_last_cap": "31\n"})
    if through == "config":
        _volume(bundle.config, fake, "/proc/sys/kernel")
        dest = "/proc/sys/kernel"
    else:
        os.symlink("/proc/sys/kernel", bundle.rootfs / "data")
        _volume(bundle.config, fake, "/data")
        dest = "/data"
    bundle.config["process"]["args"] = ["sh", "-c", REPORT.format(proc="proc")]
    msg = _refusal(pyrun, bundle)
    assert msg.endswith(f'check proc-safety of {dest} mount: "{bundle.rootfs}/proc/sys/kernel" '
                        "cannot be mounted because it is inside /proc (step: prepare rootfs)"), msg


def test_sysctl_into_a_volume_over_proc_sys_is_refused(pyrun, bundle, tmp_path):
    """A bind of a host directory over /proc/sys plus `sysctl
    net.ipv4.ip_forward=1`: pyrun used to write "1" into the host file
    <fake>/net/ipv4/ip_forward (and then failed on the missing cap_last_cap).
    Checked: with check_target returning at once, the run succeeds (the
    init's own procfs fd still keeps the write off the host file).
    runc 1.1.5 and 1.4.3 refuse the mount with the same wording.
    """
    fake = _fake_tree(tmp_path / "fake", {"net/ipv4/ip_forward": "0\n"})
    _volume(bundle.config, fake, "/proc/sys")
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    msg = _refusal(pyrun, bundle)
    assert msg.endswith(f'check proc-safety of /proc/sys mount: "{bundle.rootfs}/proc/sys" '
                        "cannot be mounted because it is inside /proc (step: prepare rootfs)"), msg
    assert (fake / "net/ipv4/ip_forward").read_text() == "0\n"


def test_tmpfs_as_proc_is_refused(pyrun, bundle):
    """Only procfs may be /proc: a tmpfs there (filled by nobody, but the
    same for an image tree under it) is refused as runc 1.4.3 refuses it
    (runc 1.1.5 mounts it, then fails: "open /proc/self/fd").
    Checked: with check_target returning at once, the run succeeds."""
    for entry in bundle.config["mounts"]:
        if entry["destination"] == "/proc":
            entry.update(type="tmpfs", source="tmpfs", options=["nosuid"])
    msg = _refusal(pyrun, bundle)
    assert msg.endswith(f'check proc-safety of /proc mount: "{bundle.rootfs}/proc" '
                        "cannot be mounted because it is not of type proc (step: prepare rootfs)"), msg


@pytest.mark.parametrize("name, fstype", [("proc", "proc"), ("sys", "sysfs")])
def test_proc_or_sys_symlink_in_image_is_refused(pyrun, bundle, tmp_path, name, fstype):
    """Image `/proc -> /data` (or `/sys -> /data`) and a volume at /data: the
    proc mount went to /data, the volume covered it, and the container's /proc
    was the volume: the init read its fake cap_last_cap ("31") and setgroups
    ("deny"), and the container had the caller's groups and read dmesg.
    Checked: with check_ordinary_directory returning at once, both runs
    succeed. runc 1.1.5 and 1.4.3: 'filesystem "proc" must be mounted on
    ordinary directory'.
    """
    _docker_like(bundle.config)
    (bundle.rootfs / name).rmdir()
    os.symlink("/data", bundle.rootfs / name)
    fake = _fake_tree(tmp_path / "fake", {"sys/kernel/cap_last_cap": "31\n", "self/setgroups": "deny\n"})
    _volume(bundle.config, fake, "/data")
    msg = _refusal(pyrun, bundle)
    assert msg.endswith(f"error mounting '{fstype}' to rootfs at '/{name}': "
                        f'filesystem "{fstype}" must be mounted on ordinary directory (step: prepare rootfs)'), msg


def test_lxcfs_files_may_still_be_covered(pyrun, bundle, tmp_path):
    """The files lxcfs emulates stay allowed, as in runc: a bind over
    /proc/meminfo and /proc/sys/kernel/ns_last_pid runs."""
    fake = _fake_tree(tmp_path / "lxcfs", {"meminfo": "MemTotal: 42 kB\n", "ns_last_pid": "7\n"})
    bundle.config["mounts"] += [
        {"destination": "/proc/meminfo", "type": "bind", "source": str(fake / "meminfo"), "options": ["bind"]},
        {"destination": "/proc/sys/kernel/ns_last_pid", "type": "bind", "source": str(fake / "ns_last_pid"),
         "options": ["bind"]}]
    bundle.set_args("cat", "/proc/meminfo", "/proc/sys/kernel/ns_last_pid")
    assert pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout == "MemTotal: 42 kB\n7\n"


# --- the init reads procfs through its own fd, never the container's /proc -------

@pytest.fixture
def fake_proc_image(bundle):
    """An image whose /proc is a plain directory tree with the attacker's
    files, and a config that mounts the real procfs at /realproc only: no
    mount check can object, so only the init's own procfs fd protects it."""
    _docker_like(bundle.config)
    proc = bundle.rootfs / "proc"
    _fake_tree(proc, {"self/setgroups": "deny\n", "sys/kernel/cap_last_cap": "31\n",
                      "sys/net/ipv4/ip_forward": "0\n"})
    for entry in bundle.config["mounts"]:
        if entry["destination"] == "/proc":
            entry["destination"] = "/realproc"
    return bundle


def _report(pyrun, bundle, cid: str | None = None) -> tuple[list[str], dict[str, str]]:
    bundle.set_args("sh", "-c", REPORT.format(proc="realproc"))
    out = pyrun("run", "-b", str(bundle.path), cid or pyrun.new_id(), extra_groups=GROUPS).stdout
    lines = out.splitlines()
    return lines, status_fields("\n".join(lines[1:-1]))


def test_fake_setgroups_in_image_does_not_keep_caller_groups(pyrun, fake_proc_image):
    """The image's /proc/self/setgroups says "deny"; pyrun is run with
    supplementary groups 4242 4343. The container must have none of them.
    Checked: with `_setgroups_denied` reading open("/proc/self/setgroups")
    again, `id -G` printed "0 4242 4343" and Groups was "4242 4343".
    runc 1.4.3 drops them (Groups empty); runc 1.1.5 cannot run this bundle
    at all ("open /proc/self/fd: no such file or directory").
    """
    lines, status = _report(pyrun, fake_proc_image)
    assert lines[0] == "0"
    assert status["Groups"] == ""


def test_fake_cap_last_cap_in_image_does_not_keep_high_caps(pyrun, fake_proc_image):
    """The image's /proc/sys/kernel/cap_last_cap says 31. The bounding set
    must still be exactly the configured one, and CAP_SYSLOG (34) absent, so
    the host's kernel log stays unreadable (dmesg_restrict is 1 here).
    Checked: with `switch user` reading /proc/sys/kernel/cap_last_cap by path
    again, CapBnd and CapEff were 000001ff20000420 and dmesg printed the
    host's log (DMESG-READ). runc 1.4.3 IS fooled by this bundle (CapBnd
    000001ff20000420, dmesg readable); runc 1.1.5 cannot run it.
    """
    assert Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() == "1"
    lines, status = _report(pyrun, fake_proc_image)
    assert int(status["CapBnd"], 16) == DEFAULT_CAPBND
    assert int(status["CapEff"], 16) == DEFAULT_CAPBND
    assert lines[-1] == "DMESG-REFUSED"


def test_sysctl_is_not_written_into_the_image(pyrun, fake_proc_image):
    """`sysctl net.ipv4.ip_forward=1` with the image's /proc/sys a plain
    directory: the value must reach the container's network namespace (seen
    through the real procfs at /realproc), and the image file on the host
    must stay "0".
    Checked: with apply_sysctls writing to "/proc/sys/..." by path again, the
    host file <rootfs>/proc/sys/net/ipv4/ip_forward held "1" and the
    container's ip_forward was 0. runc 1.4.3 gets this right; 1.1.5 cannot
    run the bundle.
    """
    bundle = fake_proc_image
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    bundle.set_args("cat", "/realproc/sys/net/ipv4/ip_forward")
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout
    assert out == "1\n"
    assert (bundle.rootfs / "proc/sys/net/ipv4/ip_forward").read_text() == "0\n"


def test_exec_ignores_a_fake_cap_last_cap_the_container_mounted(pyrun, bundle):
    """A container with CAP_SYS_ADMIN covers its own /proc/sys/kernel with a
    tmpfs whose cap_last_cap says 31, then waits. A later `pyrun exec` (same
    bounding set as the config, no CAP_SYSLOG) must not leave caps 32-40.
    Checked: with `switch user` reading /proc/sys/kernel/cap_last_cap by path
    again, the exec'd process had CapBnd 000001ff20200420.
    """
    _docker_like(bundle.config)
    for kind in ("bounding", "effective", "permitted"):
        bundle.config["process"]["capabilities"][kind].append("CAP_SYS_ADMIN")
    expected = DEFAULT_CAPBND | (1 << 21)
    bundle.set_args("sh", "-c", "mount -t tmpfs tmpfs /proc/sys/kernel && echo 31 > /proc/sys/kernel/cap_last_cap"
                    " && touch /tmp/ready; sleep 300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        probe = pyrun("exec", cid, "sh", "-c", "while [ ! -e /tmp/ready ]; do sleep 0.05; done; "
                      "cat /proc/sys/kernel/cap_last_cap; sh -c 'cat /proc/self/status; true'").stdout
    finally:
        pyrun("delete", "-f", cid)
    assert probe.splitlines()[0] == "31"          # the fake is in place
    assert int(status_fields(probe)["CapBnd"], 16) == expected


# --- --no-pivot: the host's /proc must not stay reachable ----------------------

@pytest.fixture
def shared_host_proc(tmp_path):
    """A full procfs of our own on the host, below a shared tmpfs (this
    host's mounts are private): a detach in the container's namespace that
    propagated back would take it away."""
    import subprocess
    parent = tmp_path / "shared"
    parent.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(parent)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(parent)], check=True)
        (parent / "proc").mkdir()
        subprocess.run(["mount", "-t", "proc", "proc", str(parent / "proc")], check=True)
        yield parent / "proc"
    finally:
        subprocess.run(["umount", "-R", "-l", str(parent)], check=False)


@pytest.mark.parametrize("propagation", [None, "slave"])
def test_no_pivot_container_cannot_mount_a_fresh_proc(pyrun, bundle, shared_host_proc, propagation):
    """With --no-pivot the host's full /proc stayed in the container's mount
    namespace, under the chroot, and the kernel lets a new user+pid namespace
    mount a fresh, unmasked procfs while one is fully visible: `unshare -mrpf`
    then `mount -t proc` printed MOUNTED. The container's own /proc has
    masked paths, so with the host's detached the mount must fail, and the
    host's proc mounts must still be there afterwards (the detach must not
    propagate, even with rootfsPropagation "slave", which leaves a shared host mount
    below "/" a peer of the host's).
    Checked: without _hide_host_proc_and_sys, stdout was ["0", "MOUNTED"];
    without its MS_SLAVE step, the shared host proc was gone after the
    `slave` run.
    runc 1.1.5 and 1.4.3: "mount: permission denied".
    """
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}   # unshare -r maps 0 to it
    if propagation:
        bundle.config["linux"]["rootfsPropagation"] = propagation
    bundle.set_args("unshare", "-mrpf", "sh", "-c",
                    "id -u; mkdir -p /tmp/p; mount -t proc proc /tmp/p && echo MOUNTED || echo REFUSED")
    res = pyrun("run", "--no-pivot", "-b", str(bundle.path), pyrun.new_id())
    assert res.stdout.splitlines() == ["0", "REFUSED"], res
    assert "permission denied" in res.stderr
    assert os.path.ismount("/proc") and os.path.ismount("/sys")
    assert os.path.ismount(shared_host_proc)
    assert status_fields((shared_host_proc / "self/status").read_text())["Pid"] == str(os.getpid())
