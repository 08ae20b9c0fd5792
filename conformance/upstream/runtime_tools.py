#!/usr/bin/env python3
"""The OCI runtime-tools validation programs (58, validation/*) against runtimes.

    runtime_tools.py [--runtime PATH]... [--jobs N] [--program NAME]... [--update-expected]

Defaults: this checkout's .venv/bin/pyrun and Debian's /usr/sbin/runc, side by side.
build.py makes the programs, runtimetest and a busybox-static rootfs (cached).
Each (runtime, program) pair runs in its own scratch directory (real copies of
runtimetest and rootfs-amd64.tar.gz, a private TMPDIR), its own cgroup, and
through a two-line wrapper that gives the runtime a private --root (the programs
call the runtime without one). A program is *clean* when it exits 0 with no
`not ok`; its *points* are its TAP `ok` lines. Programs that share the absolute
cgroup /cgrouptest never run at the same time. Results are compared with
expected-runtime-tools.txt; anything unexpected, or anything left behind, makes
the exit status 1.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402
from common import (HERE, Outcome, WorkerCgroup, compare, finish, load_expected, parse_args, print_unexpected,  # noqa: E402
                    loop_devices, mounts_under, runtime_list, top_cgroups, runtime_name, unmount_all,
                    write_expected)

EXPECTED = HERE / "expected-runtime-tools.txt"
HEADER = """\
# runtime-tools 5e63903 validation programs, per runtime: <runtime> <pass|fail|skip> <program>  -- <reason>
# pass = clean (exit 0, no `not ok`); skip = the program skipped itself whole.
# Checked by conformance/upstream/runtime_tools.py: any other result fails the run.
# Regenerate with --update-expected (reasons kept).
"""
TIMEOUT = 300
TAP = re.compile(r"^(ok|not ok)\b(?:\s+\d+)?(.*)$")
ABS_CGROUP = "/cgrouptest"        # runtime-tools' cgroups.AbsCgroupPath
# programs that use ABS_CGROUP: one at a time, whatever the runtime (and likewise the
# linux_cgroups_relative_* ones: runc 1.1.5 puts a relative cgroup v2 path at the
# root of the hybrid host's unified hierarchy, not below its own cgroup)
ABS_CGROUP_USERS = {"delete_only_create_resources", "delete_resources", "linux_cgroups_blkio", "linux_cgroups_cpus",
                    "linux_cgroups_devices", "linux_cgroups_hugetlb", "linux_cgroups_memory",
                    "linux_cgroups_network", "linux_cgroups_pids"}


# Programs whose success is silent (no TAP line, exit 0); each fails loudly otherwise:
# an `error` YAML diagnostic (poststop_fail) or a non-zero exit (util.Fatal: the
# *_fail ones when the runtime accepts what it must refuse).
SILENT_ON_SUCCESS = {"poststart", "poststop", "poststop_fail", "prestart_fail", "process_capabilities_fail",
                     "process_rlimits_fail"}
# The parents of the relative cgroupsPath testdir/cgrouptest/container: a runtime
# removes the container's own cgroup, not the parents the config named (runc neither).
REL_PARENTS = ("/testdir", "/testdir/cgrouptest")
# Mounts a program leaves by design, unmounted here, not counted as a leak.
KNOWN_MOUNT_LEAKS = {
    "linux_ns_itype": "its container shares the host mount namespace: the runtime mounts /proc, "
                      "/dev, /sys into the bundle on the host and nothing unmounts them (runc too)",
}


class Runner:
    def __init__(self, tree: Path, work: Path, logs: Path) -> None:
        self.tree = tree
        self.work = work
        self.logs = logs
        self.lock = threading.Lock()
        self.locks: dict[str, threading.Lock] = {}
        self.leaks: list[str] = []
        self.leaks_by: dict[tuple[str, str], list[str]] = {}
        self.points: dict[str, list[int]] = {}

    def group_lock(self, program: str) -> threading.Lock:
        key = ("abs-cgroup" if program in ABS_CGROUP_USERS
               else "rel-cgroup" if program.startswith("linux_cgroups_relative_") else program)
        with self.lock:
            return self.locks.setdefault(key, threading.Lock())

    def run_program(self, runtime: str, program: str) -> Outcome:
        with self.group_lock(program):
            return self._run(runtime, program)

    def _run(self, runtime: str, program: str) -> Outcome:
        name = runtime_name(runtime)
        tag = f"{name}-{program}"
        scratch = self.work / tag
        scratch.mkdir(mode=0o755)
        tmp = scratch / "tmp"
        tmp.mkdir()
        os.chmod(tmp, 0o1777)
        root = scratch / "root"
        shutil.copy2(self.tree / "runtimetest", scratch / "runtimetest")
        shutil.copy2(self.tree / "rootfs-amd64.tar.gz", scratch / "rootfs-amd64.tar.gz")
        wrapper = scratch / name
        wrapper.write_text(f'#!/bin/sh\nexec {runtime} --root {root} "$@"\n')
        wrapper.chmod(0o755)
        cg = WorkerCgroup(f"pyrun-rtools-{os.getpid()}-{tag}")
        cg.create()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNC", "PYTEST"))}
        env.update(RUNTIME=str(wrapper), TMPDIR=str(tmp), LANG="C.UTF-8",
                   PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        t0 = time.monotonic()
        proc = subprocess.Popen([str(self.tree / "validation-bin" / program)], cwd=scratch, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=cg.join, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=TIMEOUT)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            timed_out = True
        text = out.decode(errors="replace")
        (self.logs / f"{tag}.tap").write_text(text + f"\n# exit status {proc.returncode}\n")

        ok = not_ok = skipped = 0
        failures = []
        for line in text.splitlines():
            m = TAP.match(line)
            if not m:
                continue
            if "# SKIP" in line.upper():
                skipped += 1
            elif m.group(1) == "ok":
                ok += 1
            else:
                not_ok += 1
                failures.append(line)
        # A YAML "error" with no test line is the program giving up (hooks, prestart...).
        gave_up = ok + not_ok + skipped == 0 and '"error":' in text
        silent = ok + not_ok + skipped == 0 and program not in SILENT_ON_SUCCESS
        if proc.returncode == 0 and not_ok == 0 and ok == 0 and skipped:
            result = "skip"
        elif proc.returncode == 0 and not (not_ok or gave_up or silent or timed_out):
            result = "pass"
        else:
            result = "fail"
        detail = "\n".join(failures[:20])
        if result == "fail" and not failures:
            detail = ("no test output (the container's output never reached the program)\n"
                      if silent else "") + "\n".join(text.splitlines()[-15:]) + \
                f"\n(exit status {proc.returncode})"

        leaks = [f"{tag}: container {c}" for c in runtime_list(runtime, str(root))]
        for c in runtime_list(runtime, str(root)):
            subprocess.run([runtime, "--root", str(root), "delete", "--force", c],
                           capture_output=True, check=False)
        leaks += [f"{tag}: {x}" for x in cg.leftovers()
                  if not (x.startswith("cgroup ") and x.endswith(REL_PARENTS))]
        cg.destroy()
        left = mounts_under(str(scratch))
        if left:
            if program not in KNOWN_MOUNT_LEAKS:
                leaks += [f"{tag}: mount {m}" for m in left]
            unmount_all(left)
        if timed_out:
            leaks.append(f"{tag}: timed out after {TIMEOUT} s")
        shutil.rmtree(scratch, ignore_errors=True)
        with self.lock:
            self.leaks_by[name, program] = leaks
            self.points[tag] = [ok, ok + not_ok + skipped, skipped]
        print(f"  {tag:48} {result:4} {ok:4}/{ok + not_ok + skipped:<4} points  {time.monotonic() - t0:5.1f} s",
              flush=True)
        return Outcome(name, program, result, detail)


def cgroup_leftovers() -> list[str]:
    return [str(Path(m) / ABS_CGROUP.lstrip("/")) for m in Path("/sys/fs/cgroup").iterdir()
            if (Path(m) / ABS_CGROUP.lstrip("/")).exists()]


def main() -> int:
    args, runtimes = parse_args(__doc__, "runtime_tools.py", "PYRUN_RTOOLS_JOBS",
                                "programs at once, over all runtimes (default 4)",
                                "program", "only this program (repeatable)")
    args.expected = args.expected or EXPECTED

    t0 = time.monotonic()
    cache = build.build("runtime-tools")
    print(f"runtime-tools: build ready in {time.monotonic() - t0:.0f} s ({cache})", flush=True)
    tree = cache / "runtime-tools"
    programs = args.program or sorted(p.name for p in (tree / "validation-bin").iterdir())

    work = Path(tempfile.mkdtemp(prefix="pyrun-rtools.", dir="/var/tmp"))
    os.chmod(work, 0o755)
    logs = args.logs or work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cg_before = set(cgroup_leftovers())
    tops_before = top_cgroups()
    loops_before = loop_devices()
    runner = Runner(tree, work, logs)
    # the cgroup programs first: they queue on one lock, the rest fill in around them
    order = sorted(programs, key=lambda p: (p not in ABS_CGROUP_USERS, p))
    jobs = [(r, p) for p in order for r in runtimes]
    t1 = time.monotonic()
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda rp: runner.run_program(*rp), jobs))
    elapsed = time.monotonic() - t1
    for d in set(cgroup_leftovers()) - cg_before:
        runner.leaks.append(f"cgroup {d}")
        for sub in sorted(Path(d).rglob("*"), reverse=True):
            if sub.is_dir():
                sub.rmdir()
        Path(d).rmdir()
    runner.leaks += [f"loop device {x}" for x in sorted(loop_devices() - loops_before)]
    for d in sorted(top_cgroups() - tops_before):
        if "/pyrun-rtools-" in d:
            continue
        if Path(d).name == REL_PARENTS[0].lstrip("/"):
            # runc's relative cgroupsPath on the v2 half of a hybrid host: the parents it leaves
            for sub in sorted((x for x in Path(d).rglob("*") if x.is_dir()), key=lambda x: -len(str(x))):
                sub.rmdir()
            Path(d).rmdir()
        else:
            print(f"  note: new cgroup (not ours? check): {d}")

    print(f"\nruntime-tools validation ({len(programs)} programs, {elapsed:.0f} s, -j{args.jobs}):")
    print(f"  {'runtime':8} {'clean':>9} {'points':>11} {'of which skipped':>17}")
    for r in runtimes:
        name = runtime_name(r)
        mine = [o for o in outcomes if o.runtime == name]
        pts = [runner.points[f"{name}-{o.test}"] for o in mine]
        print(f"  {name:8} {sum(o.result == 'pass' for o in mine):4}/{len(mine):<4} "
              f"{sum(p[0] for p in pts):5}/{sum(p[1] for p in pts):<5} {sum(p[2] for p in pts):17}")

    expected = load_expected(args.expected) if args.expected.exists() else {}
    if args.update_expected:
        names = {runtime_name(r) for r in runtimes}
        others = [Outcome(k[0], k[1], v.result) for k, v in expected.items()
                  if k[0] not in names or k[1] not in programs]
        write_expected(args.expected, others + outcomes, expected, HEADER)
        print(f"runtime-tools: wrote {args.expected}")
        expected = load_expected(args.expected)
    scope = {k for k in expected if k[1] in programs and k[0] in {runtime_name(r) for r in runtimes}}
    cmp = compare(outcomes, expected, scope)
    print_unexpected(cmp, outcomes, runtimes, args.expected)
    # What a program leaves while failing as expected is part of that known failure
    # (cleaned up here, shown as a note); after any other result it fails the run.
    notes = []
    for key, leaks in runner.leaks_by.items():
        want = expected.get(key)
        (notes if want is not None and want.result == "fail" else runner.leaks).extend(leaks)
    if notes:
        print(f"\n{len(notes)} note(s): left behind by expected failures, removed:")
        for note in notes:
            print(f"  {note}")
    return finish("runtime-tools", cmp, runner.leaks, work)

if __name__ == "__main__":
    sys.exit(main())
