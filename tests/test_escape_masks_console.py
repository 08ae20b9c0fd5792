"""Escapes through the files pyrun mounts over: the maskedPaths source
(CVE-2025-31133) and the /dev/console target (CVE-2025-52565 class).

Each test performs the published attack against real containers and looks at
what the container, and the host, see afterwards."""
from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import PYRUN
from ptys import read_pty
from test_terminal import listen
from waiting import eventually

REFUSED = "create /dev/console mount target: open /dev/console: too many levels of symbolic links"


def _mounts_at(pid: int, *points: str) -> dict[str, list[str]]:
    """{mount point: [fstype, ...]} of the process's mount table, for `points`."""
    found: dict[str, list[str]] = {p: [] for p in points}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        point = left.split()[4]
        if point in found:
            found[point].append(right.split()[0])
    return found


def _bind_dev(bundle, source: Path) -> None:
    """/dev is `source` bind-mounted, not a fresh tmpfs: pyrun makes no device
    nodes (as runc), so the files in `source` are what it finds there."""
    mounts = bundle.config["mounts"]
    index = next(i for i, m in enumerate(mounts) if m["destination"] == "/dev")
    mounts[index] = {"destination": "/dev", "type": "bind", "source": str(source), "options": ["rbind", "rw"]}


def _describe(path: Path) -> tuple[str, str] | None:
    """What is at `path`, without following it: kind and link target or bytes."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        return ("link", os.readlink(path))
    return ("file", path.read_text())


# --- maskedPaths with a fake /dev/null (CVE-2025-31133) ----------------------

SECRET = "image-controlled bytes\n"

FAKE_NULLS = {
    "missing": None,
    "symlink-to-file": ("link", "/secret"),
    "symlink-to-proc": ("link", "/proc/sys/kernel/core_pattern"),
    "symlink-dangling": ("link", "/nowhere"),
    "regular-file": ("file", SECRET),
}

# Every masked path of the default config, read in the container: a file's
# size in bytes, a directory's number of entries.  No redirection to /dev/null
# here: with the image's /dev/null a symlink, that would write to its target.
_REPORT = r"""
for p in "$@"; do
  if [ -d "$p" ]; then echo "$p dir $(ls -A "$p" | wc -l)"
  elif [ -e "$p" ]; then echo "$p file $(cat "$p" | wc -c)"
  else echo "$p absent"; fi
done
"""


@pytest.mark.parametrize("dev", ["image-dev", "tmpfs-dev"])
@pytest.mark.parametrize("fake", list(FAKE_NULLS))
def test_masked_paths_never_use_the_images_dev_null(pyrun, bundle, dev, fake):
    """CVE-2025-31133: maskedPaths are bind mounts of /dev/null; with the
    image's /dev/null missing, a symlink (to a file of the image, to a procfs
    file, dangling) or a regular file, the masks were skipped (a missing
    source was taken for a missing target) or became binds of whatever the
    symlink named, so /proc/keys and /proc/timer_list stayed readable.

    With the protection removed (restrict.mask bind-mounting the path
    "/dev/null" of the container again, as before), every image-dev case
    failed: /proc/keys and /proc/timer_list read non-empty; "missing" and
    "symlink-dangling" left every file mask off; "symlink-to-proc" put
    the host's core_pattern there; tmpfs-dev passed (pyrun makes /dev/null)."""
    masked = bundle.config["linux"]["maskedPaths"]
    assert "/proc/keys" in masked and "/proc/timer_list" in masked
    rootfs = bundle.rootfs
    (rootfs / "secret").write_text(SECRET)
    spec = FAKE_NULLS[fake]
    if spec is not None:
        kind, value = spec
        if kind == "link":
            os.symlink(value, rootfs / "dev" / "null")
        else:
            (rootfs / "dev" / "null").write_text(value)
    if dev == "image-dev":
        _bind_dev(bundle, rootfs / "dev")
    bundle.set_args("sh", "-c", _REPORT, "report", *masked)
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    null_before = _describe(rootfs / "dev" / "null")

    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id())

    seen = {}
    for line in res.stdout.splitlines():
        path, _, rest = line.partition(" ")
        seen[path] = rest
    assert sorted(seen) == sorted(masked), res.stdout
    assert seen["/proc/keys"] == "file 0", res.stdout
    assert seen["/proc/timer_list"] == "file 0", res.stdout
    # The host's procfs and sysfs are the container's too: what exists here exists there, masked.
    expected = {path: ("absent" if not os.path.exists(path) else
                       "dir 0" if os.path.isdir(path) else "file 0") for path in masked}
    assert seen == expected, res.stdout
    # Nothing the image named was touched, and the host kept its own files.
    assert (rootfs / "secret").read_text() == SECRET
    assert _describe(rootfs / "dev" / "null") == null_before
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern
    st = os.stat("/dev/null")
    assert os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


# --- /dev/console and the pty (CVE-2025-52565 class) --------------------------

VICTIM = "precious\n"


@pytest.fixture
def victim_container(pyrun, bundle, tmp_path):
    """A running container whose /dev/console is a symlink to a host file it
    can see at /out/victim; yields (id, host victim path, init pid)."""
    out = tmp_path / "out"
    out.mkdir()
    victim = out / "victim"
    victim.write_text(VICTIM)
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                                    "options": ["rbind", "rw"]})
    bundle.set_args("sh", "-c", "rm -f /dev/console; ln -s /out/victim /dev/console; touch /out/ready; "
                                "exec sleep 1000")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(bundle.path), cid, stdin=subprocess.DEVNULL)
    try:
        eventually((out / "ready").exists, timeout=10, what="the container planted its /dev/console symlink")
        yield cid, victim, pyrun.state(cid)["pid"]
    finally:
        pyrun("delete", "--force", cid, check=False)


def _assert_victim_untouched(pyrun, cid: str, victim: Path, pid: int) -> None:
    assert victim.read_text() == VICTIM
    assert _mounts_at(pid, "/out/victim", "/dev/console") == {"/out/victim": [], "/dev/console": []}
    seen = pyrun("exec", cid, "sh", "-c", "stat -c %F /out/victim; readlink /dev/console").stdout
    assert seen.splitlines() == ["regular file", "/out/victim"]


def test_exec_tty_mounts_nothing_on_the_containers_dev_console(pyrun, victim_container):
    """`exec -t` bind-mounted the new pty over /dev/console, a path the
    container chose: a symlink to /out/victim put the pty over the victim for
    every process of the container.  runc (1.1.5 and 1.4.3, run the same way)
    mounts nothing for exec: the exec succeeds, the victim stays a file.

    With the protection removed (set_up_console mounting in exec mode as
    before), the mount table showed a devpts mount at /out/victim and
    `stat` inside said "character special file"."""
    cid, victim, pid = victim_container
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "exec", "-t", cid,
                                 "sh", "-c", "tty; echo done"],
                                stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        slave = -1
        data = read_pty(master, until=b"done", timeout=20)
        assert proc.wait(timeout=20) == 0, data
        assert b"done" in data and b"/dev/pts/" in data, data
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    _assert_victim_untouched(pyrun, cid, victim, pid)


def test_detached_exec_tty_mounts_nothing_on_the_containers_dev_console(pyrun, victim_container, tmp_path):
    """`exec -d -t --console-socket`: the same attack, the master received as
    runc's recvtty receives it.  Seen failing as the test above with the
    protection removed."""
    cid, victim, pid = victim_container
    sock_path = tmp_path / "console.sock"
    server = listen(sock_path)
    master = -1
    try:
        proc = subprocess.Popen([str(PYRUN), "--root", str(pyrun.root), "exec", "-d", "-t",
                                 "--console-socket", str(sock_path), cid, "sh", "-c", "tty; echo done"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        assert len(fds) == 1
        master = fds[0]
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        data = read_pty(master, until=b"done", timeout=20)
        assert b"done" in data and b"/dev/pts/" in data, data
    finally:
        if master >= 0:
            os.close(master)
        server.close()
    _assert_victim_untouched(pyrun, cid, victim, pid)


def _shared_dev(path: Path) -> Path:
    """A /dev directory on the host that several containers bind-mount:
    each gets its own devpts on pts/, ptmx leads to it."""
    path.mkdir()
    (path / "pts").mkdir()
    os.symlink("pts/ptmx", path / "ptmx")
    return path


def test_create_refuses_a_dev_console_symlink(pyrun, bundle, tmp_path):
    """create with terminal: true on an image-controlled /dev whose console is
    a symlink to a file the container can see.  runc 1.1.5 followed it,
    truncated the victim to 0 bytes and mounted the pty over it; runc 1.4.3
    refuses with the wording asserted here.

    With the protection removed (the old exists()/open(O_CREAT)/mount by
    path), create succeeded and the pty was mounted at /out/victim."""
    dev = _shared_dev(tmp_path / "dev")
    out = tmp_path / "out"
    out.mkdir()
    (out / "victim").write_text(VICTIM)
    os.symlink("/out/victim", dev / "console")
    _bind_dev(bundle, dev)
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                                    "options": ["rbind", "rw"]})
    bundle.config["process"]["terminal"] = True
    bundle.set_args("true")
    sock_path = tmp_path / "console.sock"
    server = listen(sock_path)
    cid = pyrun.new_id()
    try:
        res = pyrun("create", "-b", str(bundle.path), "--console-socket", str(sock_path), cid,
                    check=False, global_args=("--log-format", "json"))
        created = (pyrun.root / cid).exists()
    finally:
        server.close()
        pyrun("delete", "--force", cid, check=False)
    assert res.returncode == 1
    entries = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
    assert [e["level"] for e in entries] == ["error"], res.stderr
    assert entries[0]["msg"] == ("pyrun create failed: unable to start container process: "
                                 "error during container init: " + REFUSED + " (step: set up console)"), res.stderr
    assert entries[0]["step"] == "set up console", res.stderr
    assert not created
    assert (out / "victim").read_text() == VICTIM
    assert os.readlink(dev / "console") == "/out/victim"


class _ConsoleSink(threading.Thread):
    """A console socket that takes every master it is sent and holds it until
    closed: a master closed early hangs up the created container's init."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.server = listen(path)
        self.server.settimeout(0.2)
        self.stop = threading.Event()
        self.masters: list[int] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(10)
                try:
                    _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
                except OSError:
                    continue
                self.masters.extend(fds)

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=10)
        self.server.close()
        for fd in self.masters:
            os.close(fd)


RACES = 50            # creates; each races the swapper below
RACE_SECONDS = 60     # and no longer than this


def test_create_races_dev_console_swapped_for_a_proc_symlink(pyrun, bundle, tmp_path):
    """A sibling container shares the directory the victims get as /dev and
    swaps /dev/console between a regular file and a symlink to
    /proc/sys/kernel/hostname in a tight loop, while pyrun creates containers
    with terminal: true.  After every create, the victim's mount table must
    show nothing mounted on /proc/sys/kernel/hostname and only the devpts pty
    (or nothing, the swapper may have renamed it away since) at /dev/console;
    a create that found the symlink must have refused it, and one that lost
    the file it opened to a rename must have failed to mount on it.

    With the protection removed (the old exists()/open/mount("/dev/pts/N",
    "/dev/console") by path, in init and exec), the very first create of the
    bounded run already had the pty mounted on /proc/sys/kernel/hostname."""
    dev = _shared_dev(tmp_path / "dev")
    (dev / "console").write_text("")
    swapper = bundle
    swapper.config["mounts"].append({"destination": "/shared", "type": "bind", "source": str(dev),
                                     "options": ["rbind", "rw"]})
    swapper.set_args("sh", "-c", "cd /shared; touch ready; while :; do "
                                 "ln -sf /proc/sys/kernel/hostname l; mv -f l console; "
                                 "touch f; mv -f f console; done")
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    config = json.loads(json.dumps(swapper.config))
    config["root"]["path"] = str(swapper.rootfs)
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/shared"]
    victims = type(bundle)(victim_dir, config)
    _bind_dev(victims, dev)
    victims.config["process"]["terminal"] = True
    victims.set_args("true")

    sink = _ConsoleSink(tmp_path / "console.sock")
    sink.start()
    swapper_id = pyrun.new_id()
    outcomes: list[tuple[str, object]] = []
    try:
        pyrun("run", "-d", "-b", str(swapper.path), swapper_id, stdin=subprocess.DEVNULL)
        eventually((dev / "ready").exists, timeout=10, what="the swapper started")
        deadline = time.monotonic() + RACE_SECONDS
        for _ in range(RACES):
            if time.monotonic() > deadline:
                break
            cid = pyrun.new_id()
            res = pyrun("create", "-b", str(victims.path), "--console-socket",
                        str(tmp_path / "console.sock"), cid, check=False, stdin=subprocess.DEVNULL)
            if res.returncode == 0:
                pid = pyrun.state(cid)["pid"]
                outcomes.append(("created", _mounts_at(pid, "/dev/console", "/proc/sys/kernel/hostname")))
                pyrun("delete", "--force", cid)
            else:
                outcomes.append(("refused", res.stderr))
    finally:
        pyrun("delete", "--force", swapper_id, check=False)
        sink.close()

    # Every create ends one of four named ways; anything else fails the test.
    # Found the symlink, or found the file and lost it to a rename before the
    # mount: nothing was mounted either way.
    failed = 'level=error msg="pyrun create failed: unable to start container process: ' \
             'error during container init: '
    step = ' (step: set up console)"'
    named = {
        ("created", (("/dev/console", ("devpts",)), ("/proc/sys/kernel/hostname", ()))): "pty on /dev/console",
        ("created", (("/dev/console", ()), ("/proc/sys/kernel/hostname", ()))): "pty gone with the renamed file",
        ("refused", failed + REFUSED + step): "refused the symlink",
        ("refused", failed + 'mount the pty on /dev/console: no such file or directory' + step): "lost the file",
    }

    def name(kind: str, seen) -> str:
        if kind == "created":
            key = tuple((point, tuple(types)) for point, types in sorted(seen.items()))
        else:      # one line, its time= field dropped
            key = seen.split(" ", 1)[1].rstrip("\n") if seen.count("\n") == 1 else seen
        return named.get((kind, key), f"unexpected {kind}: {seen!r}")

    counts = Counter(name(kind, seen) for kind, seen in outcomes)
    print(f"{len(outcomes)} creates: {dict(counts)}")
    assert set(counts) <= set(named.values()), counts
    assert len(outcomes) >= 20, counts
    # Creates that succeeded, their mount table looked at (the swapper's next
    # rename usually takes the pty mount away with the file before we look).
    assert counts["pty on /dev/console"] + counts["pty gone with the renamed file"] >= 1, counts
    assert counts["refused the symlink"] >= 1, counts     # the swapper really raced them
