"""What the container's process sees: user, umask, cwd, env, executable look-up,
rlimits, oom_score_adj, capabilities, no_new_privs, preserved fds, hostname,
sysctls and the time, user and (joined) network namespaces.

Every assertion is made from inside the container, with busybox.
"""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import conftest
from conftest import PYRUN, status_fields
from waiting import eventually


def run_out(pyrun, bundle, *args: str, **kw) -> str:
    """Run `args` in a fresh container; its stdout."""
    bundle.set_args(*args)
    return pyrun("run", "-b", str(bundle.path), pyrun.new_id(), **kw).stdout


def failed_run(pyrun, bundle, *args: str) -> str:
    """Run `args`, expecting failure; the one error message."""
    bundle.set_args(*args)
    return conftest.failed_run(pyrun, bundle)


def set_user(bundle, **user) -> None:
    """Run as `user`, keeping the default config's RLIMIT_NOFILE (rlimits must
    be applied before the switch away from root)."""
    bundle.config["process"]["user"] = user


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# --- user, umask -------------------------------------------------------------

def test_user_uid_gid_and_additional_gids(pyrun, bundle):
    set_user(bundle, uid=1000, gid=1001, additionalGids=[10, 20, 30])
    out = run_out(pyrun, bundle, "sh", "-c", "id; cat /proc/self/status")
    lines = out.splitlines()
    ident = dict(part.split("=", 1) for part in lines[0].split())
    assert ident["uid"] == "1000" and ident["gid"] == "1001"
    assert sorted(ident["groups"].split(",")) == ["10", "20", "30"]
    st = status_fields(out)
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1001"] * 4
    assert sorted(st["Groups"].split()) == ["10", "20", "30"]


def test_root_user_has_no_supplementary_groups_by_default(pyrun, bundle):
    out = run_out(pyrun, bundle, "cat", "/proc/self/status")
    st = status_fields(out)
    assert st["Uid"].split() == ["0"] * 4 and st["Gid"].split() == ["0"] * 4
    assert st["Groups"] == ""     # the host's groups must not be inherited


@pytest.mark.parametrize("umask,expected", [(0o027, "0027"), (0o077, "0077"), (None, "0022")])
def test_umask(pyrun, bundle, umask, expected):
    if umask is not None:
        bundle.config["process"]["user"]["umask"] = umask
    out = run_out(pyrun, bundle, "sh", "-c", "umask; grep Umask /proc/self/status; "
                  "touch /tmp/f; stat -c %a /tmp/f")
    lines = out.splitlines()
    assert lines[0] == expected
    assert lines[1].split() == ["Umask:", expected]
    assert lines[2] == format(0o666 & ~int(expected, 8), "o")


# --- cwd -----------------------------------------------------------------------

def test_cwd_existing_dir(pyrun, bundle):
    (bundle.rootfs / "srv" / "app").mkdir(parents=True)
    bundle.config["process"]["cwd"] = "/srv/app"
    out = run_out(pyrun, bundle, "sh", "-c", "pwd; readlink /proc/self/cwd")
    assert out.splitlines() == ["/srv/app", "/srv/app"]


def test_missing_cwd_is_created(pyrun, bundle):
    assert not (bundle.rootfs / "work").exists()
    bundle.config["process"]["cwd"] = "/work/deep/dir"
    out = run_out(pyrun, bundle, "sh", "-c", "pwd; readlink /proc/self/cwd; stat -c %F /work/deep/dir")
    assert out.splitlines() == ["/work/deep/dir", "/work/deep/dir", "directory"]
    assert (bundle.rootfs / "work" / "deep" / "dir").is_dir()    # made in the rootfs, not on the host
    assert not Path("/work/deep").exists()


def test_cwd_and_fds_do_not_point_at_the_host(pyrun, bundle):
    """CVE-2024-21626: no host directory as cwd, no host fd beyond stdio."""
    bundle.config["process"]["cwd"] = "/tmp"
    out = run_out(pyrun, bundle, "sh", "-c", "readlink /proc/self/cwd; exec ls -l /proc/self/fd",
                  stdin=subprocess.DEVNULL)
    lines = out.splitlines()
    assert lines[0] == "/tmp"
    fds = {}
    for line in lines[1:]:
        m = re.search(r" (\d+) -> (.*)$", line)
        if m:
            fds[int(m.group(1))] = m.group(2)
    assert {0, 1, 2} <= set(fds)
    extra = {fd: target for fd, target in fds.items() if fd > 2}
    # only the directory ls itself is reading
    assert len(extra) <= 1 and all(re.fullmatch(r"/proc/\d+/fd", t) for t in extra.values()), fds
    for target in fds.values():
        assert str(bundle.path) not in target and str(pyrun.root) not in target
        assert "cgroup" not in target


# --- environment -----------------------------------------------------------------

def caller_with_odd_signals() -> None:
    """preexec_fn: a caller (a shim, a shell) that ignores and blocks signals;
    ignored dispositions and the mask survive execve into pyrun."""
    import signal
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGPIPE, signal.SIGTERM, signal.SIGRTMIN + 3):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGINT})


def test_the_process_starts_with_default_signal_dispositions(pyrun, bundle):
    """Neither pyrun's own handlers (SIGINT, SIGPIPE, the init's wait for
    `start`) nor what its caller ignored or blocked reach the container's
    program. Checked: with exec_process's reset loop removed, SigIgn and
    SigCgt are non-zero; resetting only the signals pyrun handles leaves
    the caller's SIG_IGN of SIGRTMIN+3 in SigIgn."""
    fields = status_fields(run_out(pyrun, bundle, "cat", "/proc/self/status", preexec_fn=caller_with_odd_signals))
    assert {k: fields[k] for k in ("SigBlk", "SigIgn", "SigCgt")} == {
        "SigBlk": "0" * 16, "SigIgn": "0" * 16, "SigCgt": "0" * 16}


def test_env_is_exactly_the_config_plus_home(pyrun, bundle):
    env = ["PATH=/usr/bin:/bin", "FOO=bar baz", "EMPTY=", "WITH_EQ=a=b"]
    bundle.config["process"]["env"] = env
    out = run_out(pyrun, bundle, "env")
    assert sorted(out.splitlines()) == sorted(env + ["HOME=/root"])


@pytest.mark.parametrize("uid,home", [(65534, "/nonexistent"), (4242, "/")])
def test_home_comes_from_the_containers_passwd(pyrun, bundle, uid, home):
    set_user(bundle, uid=uid, gid=uid)
    bundle.config["process"]["env"] = ["PATH=/usr/bin"]
    out = run_out(pyrun, bundle, "env")
    assert sorted(out.splitlines()) == ["HOME=" + home, "PATH=/usr/bin"]


def test_configured_home_is_kept(pyrun, bundle):
    bundle.config["process"]["env"] = ["PATH=/usr/bin", "HOME=/custom"]
    out = run_out(pyrun, bundle, "env")
    assert sorted(out.splitlines()) == ["HOME=/custom", "PATH=/usr/bin"]


@pytest.mark.parametrize("env", [["HOME="], ["HOME=/override", "HOME="]])
def test_empty_home_is_replaced_by_the_passwd_home(pyrun, bundle, env):
    """The last HOME wins and an empty one is unset (runc 1.2+, env.bats). Before: HOME=""."""
    bundle.config["process"]["env"] = ["PATH=/usr/bin:/bin"] + env
    out = run_out(pyrun, bundle, "env")
    assert sorted(out.splitlines()) == ["HOME=/root", "PATH=/usr/bin:/bin"]


def test_last_home_wins_when_not_empty(pyrun, bundle):
    bundle.config["process"]["env"] = ["PATH=/usr/bin:/bin", "HOME=", "HOME=/override"]
    out = run_out(pyrun, bundle, "env")
    assert sorted(out.splitlines()) == ["HOME=/override", "PATH=/usr/bin:/bin"]


def test_path_lookup_uses_the_containers_path(pyrun, bundle):
    tools = bundle.rootfs / "opt" / "tools"
    tools.mkdir(parents=True)
    (tools / "hello").write_text("#!/bin/sh\necho hello from $0 with $1\n")
    (tools / "hello").chmod(0o755)
    bundle.config["process"]["env"] = ["PATH=/nowhere:/opt/tools:/bin"]
    out = run_out(pyrun, bundle, "hello", "arg1")
    assert out == "hello from /opt/tools/hello with arg1\n"


# --- executable errors (Docker maps these to 127 / 126) ------------------------------

def test_executable_not_found_in_path(pyrun, bundle):
    msg = failed_run(pyrun, bundle, "nosuch")
    assert 'exec: "nosuch": executable file not found in $PATH' in msg
    assert "look up executable" in msg


def test_executable_path_that_does_not_exist(pyrun, bundle):
    msg = failed_run(pyrun, bundle, "/no/such/prog")
    assert 'exec: "/no/such/prog": ' in msg
    assert "no such file or directory" in msg      # Go's lower-case errno text, as Docker matches it


def test_executable_that_is_not_executable(pyrun, bundle):
    script = bundle.rootfs / "bin" / "plain"
    script.write_text("#!/bin/sh\necho should not run\n")
    script.chmod(0o644)
    msg = failed_run(pyrun, bundle, "/bin/plain")
    assert 'exec: "/bin/plain": ' in msg and "permission denied" in msg


# --- rlimits, oom_score_adj --------------------------------------------------------

def test_rlimit_nofile(pyrun, bundle):
    hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard_now != resource.RLIM_INFINITY and hard_now < 1024:
        pytest.skip(f"our own hard RLIMIT_NOFILE is {hard_now}: this test lowers limits to 1024")
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]
    out = run_out(pyrun, bundle, "sh", "-c", "ulimit -n; ulimit -Hn; grep 'Max open files' /proc/self/limits")
    lines = out.splitlines()
    assert lines[0] == "512" and lines[1] == "1024"
    assert lines[2].split()[3:5] == ["512", "1024"]


def test_rlimits_apply_to_a_non_root_user(pyrun, bundle):
    """Lowering a limit must not depend on the runtime holding CAP_SYS_RESOURCE."""
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]
    out = run_out(pyrun, bundle, "sh", "-c", "id -u; ulimit -n; ulimit -Hn")
    assert out.splitlines() == ["1000", "512", "1024"]


def test_rlimit_above_the_hard_limit_fails_create_cleanly(pyrun, bundle):
    hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard_now == resource.RLIM_INFINITY:
        pytest.skip("the hard NOFILE limit is unlimited here")
    # Above both our hard limit and fs.nr_open: refused with or without CAP_SYS_RESOURCE.
    with open("/proc/sys/fs/nr_open") as f:
        too_high = max(hard_now, int(f.read())) + 1
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": too_high}]
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    res = pyrun("create", "-b", str(bundle.path), cid, check=False)
    assert res.returncode != 0
    assert "RLIMIT_NOFILE" in one_line(res.stderr)
    assert not (pyrun.root / cid).exists()
    assert pyrun("state", cid, check=False).returncode != 0


def test_oom_score_adj(pyrun, bundle):
    with open("/proc/self/oom_score_adj") as f:
        ours = f.read()
    bundle.config["process"]["oomScoreAdj"] = 500
    out = run_out(pyrun, bundle, "cat", "/proc/self/oom_score_adj")
    assert out == "500\n"
    with open("/proc/self/oom_score_adj") as f:
        assert f.read() == ours


# --- capabilities, no_new_privs -------------------------------------------------------

def test_default_capabilities(pyrun, bundle):
    st = status_fields(run_out(pyrun, bundle, "cat", "/proc/self/status"))
    assert int(st["CapBnd"], 16) == 0x20000420
    assert int(st["CapEff"], 16) == 0x20000420
    assert int(st["CapPrm"], 16) == 0x20000420
    assert int(st["CapInh"], 16) == 0
    assert int(st["CapAmb"], 16) == 0


def test_ambient_capabilities_for_a_non_root_user(pyrun, bundle):
    net_bind = 1 << 10
    set_user(bundle, uid=1000, gid=1000)
    caps = ["CAP_NET_BIND_SERVICE"]
    bundle.config["process"]["capabilities"] = {k: list(caps) for k in
                                                ("bounding", "effective", "permitted",
                                                 "inheritable", "ambient")}
    st = status_fields(run_out(pyrun, bundle, "cat", "/proc/self/status"))
    assert st["Uid"].split()[0] == "1000"
    assert int(st["CapAmb"], 16) == net_bind
    assert int(st["CapInh"], 16) == net_bind
    assert int(st["CapBnd"], 16) == net_bind
    # kept across exec by a non-root user only because they are ambient
    assert int(st["CapEff"], 16) == net_bind and int(st["CapPrm"], 16) == net_bind

    del bundle.config["process"]["capabilities"]["ambient"]
    st = status_fields(run_out(pyrun, bundle, "cat", "/proc/self/status"))
    assert int(st["CapAmb"], 16) == 0 and int(st["CapEff"], 16) == 0


@pytest.mark.parametrize("nnp,expected", [(True, "1"), (False, "0")])
def test_no_new_privileges(pyrun, bundle, nnp, expected):
    bundle.config["process"]["noNewPrivileges"] = nnp
    st = status_fields(run_out(pyrun, bundle, "cat", "/proc/self/status"))
    assert st["NoNewPrivs"] == expected


# --- preserved and leaked fds --------------------------------------------------------

_FD3_LAUNCHER = ("import os, sys\n"
                 "w = int(sys.argv[1])\n"
                 "if w != 3:\n"
                 "    os.dup2(w, 3)\n"
                 "    os.close(w)\n"
                 "os.execv(sys.argv[2], sys.argv[2:])\n")


def run_with_fd3(pyrun, *args: str, stdout, stderr) -> tuple[int, int]:
    """Run pyrun with the write end of a pipe as its fd 3: (exit status, the pipe's read end)."""
    r, w = os.pipe()
    try:
        cmd = [sys.executable, "-c", _FD3_LAUNCHER, str(w), str(PYRUN), "--root", str(pyrun.root), *args]
        rc = subprocess.run(cmd, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=stderr, timeout=30).returncode
    finally:
        os.close(w)
    return rc, r


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    finally:
        os.close(fd)


def _fd_table(ls_output: str) -> dict[int, str]:
    table = {}
    for line in ls_output.splitlines():
        m = re.search(r" (\d+) -> (.*)$", line)
        if m:
            table[int(m.group(1))] = m.group(2)
    return table


def test_preserve_fds_passes_fd_3(pyrun, bundle, tmp_path):
    bundle.set_args("sh", "-c", "echo via-fd3 >&3; exec ls -l /proc/self/fd")
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as o, err.open("w") as e:
        rc, r = run_with_fd3(pyrun, "run", "--preserve-fds", "1", "-b", str(bundle.path),
                             pyrun.new_id(), stdout=o, stderr=e)
    assert rc == 0, err.read_text()
    assert _read_all(r) == b"via-fd3\n"
    fds = _fd_table(out.read_text())
    assert fds[3].startswith("pipe:")
    extra = {fd: t for fd, t in fds.items() if fd > 3}
    assert len(extra) <= 1 and all(re.fullmatch(r"/proc/\d+/fd", t) for t in extra.values()), fds


def test_inherited_fds_do_not_reach_the_container(pyrun, bundle, tmp_path):
    bundle.set_args("sh", "-c", "ls -l /proc/self/fd; echo leaked >&3 && echo WROTE")
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as o, err.open("w") as e:
        rc, r = run_with_fd3(pyrun, "run", "-b", str(bundle.path), pyrun.new_id(), stdout=o, stderr=e)
    text = out.read_text()
    assert _read_all(r) == b""
    assert "WROTE" not in text
    assert rc != 0      # the shell's write to fd 3 fails
    fds = _fd_table(text)
    assert not any(t.startswith("pipe:") for t in fds.values()), fds
    assert all(re.fullmatch(r"/proc/\d+/fd", t) for fd, t in fds.items() if fd > 2), fds


# --- hostname, domainname, sysctl ----------------------------------------------------

def test_hostname_and_domainname(pyrun, bundle):
    bundle.config["hostname"] = "box-1"
    bundle.config["domainname"] = "example.test"
    out = run_out(pyrun, bundle, "sh", "-c", "hostname; cat /proc/sys/kernel/domainname")
    assert out.splitlines() == ["box-1", "example.test"]
    assert os.uname().nodename != "box-1"


def test_namespaced_sysctl(pyrun, bundle):
    host_path = Path("/proc/sys/net/ipv4/ip_forward")
    host_before = host_path.read_text().strip()
    want = "1" if host_before == "0" else "0"      # differ from what a new netns inherits
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": want}
    out = run_out(pyrun, bundle, "cat", "/proc/sys/net/ipv4/ip_forward")
    assert out.strip() == want
    assert host_path.read_text().strip() == host_before


def test_non_namespaced_sysctl_is_refused(pyrun, bundle):
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    bundle.config["linux"]["sysctl"] = {"kernel.core_pattern": "|/bin/evil"}
    bundle.set_args("true")
    cid = pyrun.new_id()
    res = pyrun("create", "-b", str(bundle.path), cid, check=False)
    assert res.returncode != 0
    assert "kernel.core_pattern" in one_line(res.stderr)
    assert not (pyrun.root / cid).exists()
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


# --- time namespace ------------------------------------------------------------------

def test_time_namespace_boottime_offset(pyrun, bundle):
    host_uptime = float(Path("/proc/uptime").read_text().split()[0])
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 86400, "nanosecs": 0}}
    out = run_out(pyrun, bundle, "cat", "/proc/uptime")
    inside = float(out.split()[0])
    assert inside >= 86400 + host_uptime - 1
    assert float(Path("/proc/uptime").read_text().split()[0]) < host_uptime + 60


def test_time_offsets_in_a_new_user_namespace(pyrun, open_bundle):
    """A time namespace owned by the container's new user namespace gets its offsets (runc 1.2+
    timens.bats "simple timens + userns"). Before: "set time offsets: permission denied": our
    /proc/self files are the host root's while we are not dumpable."""
    bundle = open_bundle
    linux = bundle.config["linux"]
    linux["namespaces"] += [{"type": "user"}, {"type": "time"}]
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["timeOffsets"] = {"monotonic": {"secs": 7881, "nanosecs": 2718281},
                            "boottime": {"secs": 1337, "nanosecs": 3141519}}
    out = run_out(pyrun, bundle, "cat", "/proc/self/timens_offsets")
    assert [line.split() for line in out.splitlines()] == [["monotonic", "7881", "2718281"],
                                                           ["boottime", "1337", "3141519"]]


# --- user namespace -------------------------------------------------------------------

def _with_own_userns(bundle) -> dict:
    """A new user namespace mapping 0-65535 to host 100000+; the config's linux section."""
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    return linux


def test_joining_another_containers_user_namespace(pyrun, open_bundle):
    """By path, no mappings of its own, with the default mounts (devpts gid=5): runc 1.2+
    userns.bats "userns join other container userns". Before: "error mounting 'devpts' ...:
    value too large for defined data type": our host uid/gid are unmapped there."""
    bundle = open_bundle
    linux = _with_own_userns(bundle)
    bundle.set_args("sleep", "300")
    target = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), target)
    try:
        pid = pyrun.state(target)["pid"]
        for ns in linux["namespaces"]:
            if ns["type"] == "user":
                ns["path"] = f"/proc/{pid}/ns/user"
        del linux["uidMappings"], linux["gidMappings"]
        bundle.set_args("sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                        "readlink /proc/self/ns/user")
        out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout.split()
        assert out == ["0", "100000", "65536", "0", "100000", "65536", "0", "0",
                       os.readlink(f"/proc/{pid}/ns/user")]
    finally:
        pyrun("delete", "-f", target)


def test_joining_a_user_namespace_and_a_network_namespace_it_does_not_own(pyrun, open_bundle):
    """The network namespace is the host's root's (a host process's), the user namespace a
    container's: the first is joined before the second, as runc does (userns.bats "userns join
    external namespaces [wrong userns owner]"). Before: "failed to join network namespace
    ...: operation not permitted": pyrun joined the user namespace first."""
    bundle = open_bundle
    linux = _with_own_userns(bundle)
    bundle.set_args("sleep", "300")
    target = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), target)
    holder = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        netns = f"/proc/{holder.pid}/ns/net"
        eventually(lambda: os.readlink(netns) != os.readlink("/proc/self/ns/net"), what="holder's netns")
        userns = f"/proc/{pyrun.state(target)['pid']}/ns/user"
        for ns in linux["namespaces"]:
            ns.update({"user": {"path": userns}, "network": {"path": netns}}.get(ns["type"], {}))
        del linux["uidMappings"], linux["gidMappings"]
        # no sysfs of our own in a network namespace our user namespace does not own
        bundle.config["mounts"] = [m if m.get("type") != "sysfs" else
                                   {"destination": m["destination"], "type": "bind", "source": "/sys",
                                    "options": ["rbind"]} for m in bundle.config["mounts"]]
        bundle.set_args("sh", "-c", "readlink /proc/self/ns/user; readlink /proc/self/ns/net")
        out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout.split()
        assert out == [os.readlink(userns), os.readlink(netns)]
    finally:
        holder.kill()
        holder.wait()
        pyrun("delete", "-f", target)


def test_an_empty_namespace_path_is_a_new_namespace(pyrun, bundle):
    """`"path": ""` is no path, as runc (Go) reads it (run.bats "joining existing container
    namespaces" gives the mount namespace so). Before: "linux.namespaces[N].path: '' does
    not match '^/'"."""
    for ns in bundle.config["linux"]["namespaces"]:
        if ns["type"] in ("mount", "uts"):
            ns["path"] = ""
    bundle.set_args("sh", "-c", "readlink /proc/self/ns/mnt; readlink /proc/self/ns/uts")
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id()).stdout.split()
    host = [os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/self/ns/uts")]
    assert len(out) == 2 and out[0] != host[0] and out[1] != host[1]


def test_user_namespace(pyrun, open_bundle):
    bundle = open_bundle
    shared = bundle.path / "shared"
    shared.mkdir()
    os.chown(shared, 100000, 100000)
    (bundle.rootfs / "shared").mkdir()    # the mapped root cannot create it in a host-owned rootfs
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["mounts"].append({"destination": "/shared", "type": "bind", "source": str(shared),
                                    "options": ["rbind", "rw"]})
    out = run_out(pyrun, bundle, "sh", "-c",
                  "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                  "touch /shared/made-inside; mkdir /shared/dir-inside; "
                  "ls -l /dev/null; echo discard > /dev/null && echo null-ok; "
                  "head -c 4 /dev/zero | wc -c")
    lines = out.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2] == "0" and lines[3] == "0"
    null = lines[4]
    assert null.startswith("c") and re.search(r"\b1,\s+3\b", null), null
    assert lines[5] == "null-ok"
    assert lines[6].strip() == "4"
    for name in ("made-inside", "dir-inside"):
        st = os.stat(shared / name)
        assert (st.st_uid, st.st_gid) == (100000, 100000)


# --- joining a namespace by path --------------------------------------------------------

@pytest.fixture(scope="module")
def netns_dir() -> Iterator[None]:
    """`ip netns add` mounts /run/netns once; do that outside the leak check."""
    def mounted() -> bool:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == "/run/netns" for line in f)
    existed, was_mounted = os.path.isdir("/run/netns"), mounted()
    name = f"pyrun-t-prep-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "delete", name], check=True)
    yield
    if not was_mounted and mounted():
        subprocess.run(["umount", "/run/netns"], check=False)
    if not existed:
        try:
            os.rmdir("/run/netns")
        except OSError:
            pass


def test_join_network_namespace_by_path(netns_dir, pyrun, bundle):
    name = f"pyrun-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        added = subprocess.run(["ip", "-n", name, "link", "add", "d0", "type", "dummy"],
                               stderr=subprocess.DEVNULL)
        if added.returncode != 0:     # no dummy driver in this kernel: a bridge is as good
            subprocess.run(["ip", "-n", name, "link", "add", "d0", "type", "bridge"], check=True)
        for ns in bundle.config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/var/run/netns/{name}"
        out = run_out(pyrun, bundle, "sh", "-c", "ip -o link show; readlink /proc/self/ns/net")
        names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ": " in line]
        assert "d0" in names
        inode = os.stat(f"/run/netns/{name}").st_ino
        assert out.splitlines()[-1] == f"net:[{inode}]"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


# --- a cwd only the runtime may enter (runc: chdir before the user switch, then again) ---

def test_cwd_the_user_cannot_enter_but_root_can(pyrun, bundle):
    """cwd.bats "runc create can chdir if runc has access". Before:
    `switch user: permission denied: /root`."""
    (bundle.rootfs / "root").mkdir(exist_ok=True)
    (bundle.rootfs / "root").chmod(0o700)
    bundle.config["process"]["cwd"] = "/root"
    set_user(bundle, uid=42, gid=42)
    # runs there as 42, who may not read it
    assert run_out(pyrun, bundle, "sh", "-c", "pwd; id -u; ls . >/dev/null 2>&1; echo ls=$?").split() == \
        ["/root", "42", "ls=1"]


def test_exec_user_with_no_access_to_the_cwd(pyrun, bundle):
    """cwd.bats "runc exec --user with no access to cwd": the container's cwd
    is its user's own 0700 directory; `exec --user 0` starts there (root may)."""
    (bundle.rootfs / "root").mkdir(exist_ok=True)
    os.chown(bundle.rootfs / "root", 42, 42)
    (bundle.rootfs / "root").chmod(0o700)
    bundle.config["process"]["cwd"] = "/root"
    set_user(bundle, uid=42, gid=42)
    bundle.set_args("sleep", "60")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid)
    try:
        assert pyrun("exec", "--user", "0", cid, "pwd").stdout == "/root\n"
        # a cwd no one may enter: refused with runc's words
        res = pyrun("exec", "--cwd", "/etc/passwd", cid, "pwd", check=False, global_args=("--log-format", "json"))
        assert res.returncode == 255, res
        assert json.loads(res.stderr)["msg"].endswith(
            'chdir to cwd ("/etc/passwd") set in config.json failed: not a directory (step: switch user)'), res.stderr
    finally:
        pyrun("delete", "--force", cid)
