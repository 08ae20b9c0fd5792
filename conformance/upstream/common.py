"""What both external-suite runners share: runtimes, the expected list, cgroups, leaks.

The expected list (expected-*.txt) has one line per test and runtime:

    <runtime>  <pass|fail|skip>  <test>  -- <reason>

A reason is required for fail and skip (a host limit, an upstream test bug, or
"pyrun gap: ..."); `#` starts a comment line. A test the list does not name, a
listed test that did not run, and any result other than the listed one are all
unexpected, and an unexpected result of pyrun fails the run. runc runs beside it
as the reference: its unexpected results are printed, never the verdict (a runc
flake, e.g. critest's short-lived log spec, must not turn pyrun's CI red).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = ("pass", "fail", "skip")
REFERENCE = "runc"      # the comparison runtime: its surprises are reported, not failed on
CGROUP_ROOT = "/sys/fs/cgroup"


def default_runtimes() -> list[str]:
    return [str(REPO / ".venv" / "bin" / "pyrun"), "/usr/sbin/runc"]


def runtime_name(path: str) -> str:
    """pyrun, runc, crun...: the binary's name, the key used in the expected list."""
    return Path(path).name


@dataclass
class Expected:
    result: str
    reason: str
    line: int


def load_expected(path: Path) -> dict[tuple[str, str], Expected]:
    table: dict[tuple[str, str], Expected] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        body, _, reason = line.partition(" -- ")
        m = re.match(r"(\S+)\s+(\S+)\s+(.+)$", body.rstrip())
        if not m or m.group(2) not in RESULTS:
            raise SystemExit(f"{path}:{n}: expected '<runtime> <pass|fail|skip> <test>  -- <reason>'")
        runtime, result, test = m.groups()
        if result != "pass" and not reason.strip():
            raise SystemExit(f"{path}:{n}: a {result} needs a reason after ' -- '")
        if (runtime, test) in table:
            raise SystemExit(f"{path}:{n}: {runtime} {test!r} listed twice")
        table[runtime, test] = Expected(result, reason.strip(), n)
    return table


@dataclass
class Outcome:
    runtime: str
    test: str
    result: str
    detail: str = ""


@dataclass
class Comparison:
    unexpected: list[str] = field(default_factory=list)
    compared: set[str] = field(default_factory=set)
    reference: list[str] = field(default_factory=list)   # REFERENCE's unexpected results

    def split_reference(self) -> None:
        """Move REFERENCE's entries out of `unexpected` (compare's last step)."""
        ours = [u for u in self.unexpected if not u.startswith(REFERENCE + ": ")]
        self.reference += [u for u in self.unexpected if u.startswith(REFERENCE + ": ")]
        self.unexpected = ours


def compare(outcomes: list[Outcome], expected: dict[tuple[str, str], Expected],
            scope: set[tuple[str, str]] | None = None) -> Comparison:
    """Unexpected results, and listed tests that never reported (within `scope`)."""
    cmp = Comparison()
    seen = set()
    for o in outcomes:
        seen.add((o.runtime, o.test))
        want = expected.get((o.runtime, o.test))
        if not any(r == o.runtime for r, _ in expected):
            continue                     # a runtime the list does not cover: report only
        cmp.compared.add(o.runtime)
        if want is None:
            cmp.unexpected.append(f"{o.runtime}: {o.result} (not in the expected list): {o.test}")
        elif want.result != o.result:
            what = "UNEXPECTED PASS" if o.result == "pass" else f"unexpected {o.result}"
            cmp.unexpected.append(f"{o.runtime}: {what} (expected {want.result}"
                                  f"{': ' + want.reason if want.reason else ''}): {o.test}")
    for key, want in expected.items():
        if key not in seen and (scope is None or key in scope):
            cmp.unexpected.append(f"{key[0]}: did not run (expected {want.result}): {key[1]}")
    cmp.split_reference()
    return cmp


def write_expected(path: Path, outcomes: list[Outcome],
                   old: dict[tuple[str, str], Expected], header: str) -> None:
    """Rewrite the list from a run, keeping every reason already given for a result."""
    lines = [header.rstrip("\n")]
    order = {r: i for i, r in enumerate(["pyrun", "runc"])}
    for o in sorted(outcomes, key=lambda o: (order.get(o.runtime, 9), o.runtime, o.test)):
        prev = old.get((o.runtime, o.test))
        reason = prev.reason if prev and prev.result == o.result else ""
        if o.result != "pass" and not reason:
            reason = skip_reason(o.detail) if o.result == "skip" else "TODO"
        lines.append(f"{o.runtime:6} {o.result:4}  {o.test}" + (f"  -- {reason}" if reason else ""))
    path.write_text("\n".join(lines) + "\n")


SKIP_REASONS = [
    ("requires cgroups_v2", "host: cgroup v1 hybrid, the test needs cgroup v2"),
    ("requires rootless", "host: runs as root, the test is for rootless mode"),
    ("requires criu", "host: no criu (CRIU 3.17 cannot dump on kernel 6.18)"),
    ("requires systemd", "host: RUNC_USE_SYSTEMD unset, no systemd cgroup driver"),
    ("sshfs", "host: no working sshfs"),
    ("kernel less than 5.6", "host: kernel 6.18 (the test is for kernels before 5.6)"),
]


def skip_reason(detail: str) -> str:
    for key, reason in SKIP_REASONS:
        if key in detail:
            return reason
    return "host: " + detail.removeprefix("skip: ").strip() if detail else "TODO"


# --- cgroups: each suite process gets its own cgroup in every hierarchy -----------

def _hierarchies() -> dict[str, str]:
    """/proc/self/cgroup controller key -> mount point, for every mounted hierarchy."""
    mounts: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _src, sopts = post.split()[:3]
            mnt = pre.split()[4]
            if fstype == "cgroup2":
                mounts[""] = mnt
            elif fstype == "cgroup":
                names = [o for o in sopts.split(",")
                         if o not in ("rw", "ro") and not o.startswith(("release_agent", "clone_"))
                         and o not in ("xattr", "noprefix", "cpuset_v2_mode")]
                mounts[",".join(sorted(names))] = mnt
    return mounts


def own_cgroups() -> dict[str, str]:
    """Mount point -> this process's cgroup directory in it."""
    mounts = _hierarchies()
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, ctrls, path = line.rstrip("\n").split(":", 2)
            key = ",".join(sorted(ctrls.split(","))) if ctrls else ""
            if key in mounts:
                out[mounts[key]] = os.path.join(mounts[key], path.lstrip("/"))
    return out


def top_cgroups() -> set[str]:
    """Cgroups directly below each hierarchy's root and below our own cgroup.

    Runtimes that do not nest a relative cgroup under their own (runc 1.1.5's
    cgroup v2 half of a hybrid host) leave theirs here, out of the worker
    cgroup's sight; comparing this set before and after a run finds them.
    """
    out: set[str] = set()
    for d in set(_hierarchies().values()) | set(own_cgroups().values()):
        try:
            out |= {e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False)}
        except OSError:
            pass
    return out


class WorkerCgroup:
    """A fresh cgroup below our own in every hierarchy, for one suite process.

    Containers whose cgroupsPath is relative (or empty: the container ID) land
    below the runtime's own cgroup, so two suite processes creating
    `test_busybox` at once would share a cgroup; one directory per process keeps
    them apart and makes leftovers easy to see.
    """

    def __init__(self, name: str) -> None:
        self.dirs = [os.path.join(own, name) for own in own_cgroups().values()]

    def create(self) -> None:
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
            if "/cpuset" in d and os.path.exists(os.path.join(d, "cpuset.cpus")):
                for f in ("cpuset.cpus", "cpuset.mems"):
                    parent = Path(d).parent / f
                    Path(d, f).write_text(parent.read_text())

    def join(self) -> None:
        """preexec_fn: move the calling (child) process in."""
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("0")

    def leftovers(self) -> list[str]:
        """Sub-cgroups and processes still inside (the runtime should have removed them)."""
        found = []
        for d in self.dirs:
            for sub, dirs, _files in os.walk(d):
                if sub != d:
                    found.append(f"cgroup {sub}")
                try:
                    pids = Path(sub, "cgroup.procs").read_text().split()
                except OSError:
                    pids = []
                found += [f"process {p} ({_comm(p)}) in {sub}" for p in pids]
        return sorted(set(found))

    def destroy(self) -> None:
        """Kill what is left, then remove the directories, deepest first."""
        for _ in range(50):
            pids = set()
            for d in self.dirs:
                for sub, _dirs, _files in os.walk(d):
                    try:
                        pids.update(Path(sub, "cgroup.procs").read_text().split())
                    except OSError:
                        pass
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(int(p), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for d in self.dirs:
            for sub, _dirs, _files in sorted(os.walk(d), key=lambda w: -len(w[0])):
                for _ in range(50):
                    try:
                        os.rmdir(sub)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80].strip()
    except OSError:
        return "?"


def mounts_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4]
            if mnt == prefix or mnt.startswith(prefix.rstrip("/") + "/"):
                out.append(mnt)
    return out


def unmount_all(paths: list[str]) -> None:
    for mnt in sorted(paths, key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False, stderr=subprocess.DEVNULL)


def loop_devices() -> set[str]:
    """Attached loop devices (backing files), to compare before and after a run."""
    r = subprocess.run(["losetup", "-n", "-O", "NAME,BACK-FILE", "-l"], capture_output=True, text=True)
    return set(r.stdout.split("\n")) - {""}


def runtime_list(runtime: str, root: str) -> list[str]:
    if not os.path.isdir(root):
        return []
    r = subprocess.run([runtime, "--root", root, "list", "-q"], capture_output=True, text=True)
    return r.stdout.split()


# --- a watchdog for hung runtime commands ----------------------------------------

def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return out


def _age(pid: int) -> float:
    start = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    return float(Path("/proc/uptime").read_text().split()[0]) - start / os.sysconf("SC_CLK_TCK")


def _thaw(pid: int) -> None:
    """A process in a frozen v1 freezer cgroup cannot die: thaw the cgroup first."""
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _id, ctrls, path = line.split(":", 2)
            if "freezer" in ctrls.split(","):
                state = Path(CGROUP_ROOT, "freezer", path.lstrip("/"), "freezer.state")
                if state.exists() and state.read_text().strip() != "THAWED":
                    state.write_text("THAWED")
    except OSError:
        pass


def kill_hung(commands: list[str], dirs: list[str], limit: float) -> list[str]:
    """Kill `commands` (runtime, helpers; with their children) in `dirs` older than `limit` s.

    The suites have no per-test timeout; a runtime command that never returns
    would stall a whole file, and a helper a failed test never killed (recvtty)
    keeps bats waiting on its output pipe. Killing them makes that one test fail.
    """
    killed = []
    for d in dirs:
        try:
            pids = [int(p) for p in Path(d, "cgroup.procs").read_text().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                zombie = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
                if zombie or _age(pid) < limit or not any(
                        a.decode(errors="replace").endswith(tuple(commands)) for a in argv[:3]):
                    continue
            except (OSError, IndexError, ValueError):
                continue
            tree = _descendants(pid)
            for p in tree:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _thaw(p)
            killed.append(b" ".join(argv).decode(errors="replace")[:200])
    return killed


# --- what both runners' main() does the same way --------------------------------

def parse_args(doc: str, prog: str, jobs_env: str, jobs_help: str, select: str,
               select_help: str) -> tuple[argparse.Namespace, list[str]]:
    """The runners' shared command line; exits 2 unless run as root. Returns the
    arguments and the runtime binaries (absolute paths, or found on PATH)."""
    import shutil
    import sys
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", action="append", help="runtime binary (repeatable)")
    ap.add_argument("--jobs", "-j", type=int, default=int(os.environ.get(jobs_env, "4")), help=jobs_help)
    ap.add_argument(f"--{select}", action="append", help=select_help)
    ap.add_argument("--expected", type=Path)
    ap.add_argument("--update-expected", action="store_true",
                    help="rewrite the expected list from this run (keeps reasons)")
    ap.add_argument("--logs", type=Path, help=f"keep each {select}'s output here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print(f"{prog}: run as root", file=sys.stderr)
        sys.exit(2)
    runtimes = [str(Path(r).absolute()) if "/" in r else shutil.which(r) or r
                for r in (args.runtime or default_runtimes())]
    return args, runtimes


def print_unexpected(cmp: Comparison, outcomes: list[Outcome], runtimes: list[str], expected_path: Path) -> None:
    """Runtimes the list does not know, then each unexpected result with the end of its output."""
    for r in runtimes:
        if runtime_name(r) not in cmp.compared:
            print(f"  ({runtime_name(r)}: not in {expected_path.name}, results not compared)")
    by_test = {(o.runtime, o.test): o for o in outcomes}
    for title, entries in ((f"{REFERENCE}'s unexpected result(s), reported only", cmp.reference),
                           ("unexpected result(s)", cmp.unexpected)):
        if not entries:
            continue
        print(f"\n{len(entries)} {title}:")
        for u in entries:
            print(f"  {u}")
            rt, _, rest = u.partition(": ")
            o = by_test.get((rt, rest.split("): ", 1)[-1]))
            if o is not None and o.detail:
                print("    " + o.detail.rstrip().replace("\n", "\n    ")[-3000:])


def finish(prog: str, cmp: Comparison, leaks: list[str], work: Path) -> int:
    """What was left behind, the work directory removed, the verdict line; the exit status."""
    import shutil
    if leaks:
        print(f"\n{len(leaks)} thing(s) left behind:")
        for leak in leaks:
            print(f"  {leak}")
    shutil.rmtree(work, ignore_errors=True)
    ok = not cmp.unexpected and not leaks
    print(f"{prog}: {'OK' if ok else 'FAILED'}: {len(cmp.unexpected)} unexpected, {len(leaks)} leaks"
          f"{f' ({len(cmp.reference)} unexpected for {REFERENCE}, reported only)' if cmp.reference else ''}")
    return 0 if ok else 1
