#!/usr/bin/env python3
"""runc v1.1.5's own integration suite (tests/integration, 36 bats files) against runtimes.

    bats.py [--runtime PATH]... [--jobs N] [--file X.bats]... [--update-expected]
    bats.py --source DIR [--runtime PATH]... [--file X.bats]...

--source runs another runc tree's suite instead (e.g. `git archive v1.3.6` of
runc, unpacked; its helpers are built into it): results are printed, compared
only with an --expected list given explicitly.

Defaults: this checkout's .venv/bin/pyrun and Debian's /usr/sbin/runc, side by side.
build.py makes the tree (cached); the suite finds the runtime through its RUNC
variable, passes its own --root per test, and runs under `script` for a tty.
Every (runtime, file) pair is one bats process in its own cgroup and TMPDIR, so
the pairs can run concurrently; after each one nothing may be left (cgroups,
processes, mounts, loop devices). Results are compared with expected-bats.txt;
any unexpected pass, failure or skip, or a leak, makes the exit status 1.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402
from common import (HERE, Outcome, WorkerCgroup, compare, finish, kill_hung, parse_args, print_unexpected, top_cgroups,  # noqa: E402
                    load_expected, loop_devices, mounts_under, runtime_name, unmount_all,
                    write_expected)

EXPECTED = HERE / "expected-bats.txt"
HEADER = """\
# runc v1.1.5 tests/integration, per runtime: <runtime> <pass|fail|skip> <file>: <test>  -- <reason>
# Checked by conformance/upstream/bats.py: any other result fails the run.
# Host limits here: cgroup v1 hybrid (no v2-only tests), not rootless, no systemd cgroup
# driver, CRIU 3.17 that cannot dump on kernel 6.18, no sshfs. Runtimes other than runc run
# installed under runc's name (a symlink), as a drop-in is. Regenerate with --update-expected
# (reasons kept).
"""
# s for one bats file; a hang marks the rest as not run (tests/test_checkpoint_vm.py's
# slow TCG guest raises both limits through the environment)
FILE_TIMEOUT = float(os.environ.get("PYRUN_BATS_FILE_TIMEOUT", 900))
# s for a helper that lives as long as its test (recvtty): several CRIU round trips under TCG take longer
HELPER_TIMEOUT = float(os.environ.get("PYRUN_BATS_HELPER_TIMEOUT", 90))
NESTS_ALL_CGROUPS = {"pyrun"}   # runtimes whose files may run side by side (run_jobs)
COMMAND_TIMEOUT = 90        # s for one runtime command (runc's longest here take a few seconds)
TAP = re.compile(r"^(ok|not ok) (\d+) (.*?)(?: # skip(?:\s+\(?(.*?)\)?)?)?\s*$")
# Longest files first, so that the pool does not end on one long file.
SLOW_FIRST = ["cgroups.bats", "update.bats", "exec.bats", "run.bats", "events.bats", "kill.bats",
              "userns.bats", "mounts.bats", "checkpoint.bats", "seccomp.bats", "tty.bats"]


def parse_tap(text: str, file: str, runtime: str) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for line in text.replace("\r", "").splitlines():
        m = TAP.match(line)
        if m:
            status, _n, name, skip = m.groups()
            skipped = " # skip" in line
            result = "skip" if skipped else ("pass" if status == "ok" else "fail")
            outcomes.append(Outcome(runtime, f"{file}: {name}", result,
                                    f"skip: {skip}" if skipped and skip else ""))
        elif line.startswith("#") and outcomes and outcomes[-1].result == "fail":
            outcomes[-1].detail += line[1:].strip() + "\n"
    return outcomes


class Runner:
    def __init__(self, cache: Path, work: Path, logs: Path, tree: Path) -> None:
        self.cache = cache
        self.tree = tree
        self.integration = tree / "tests" / "integration"
        self.work = work
        self.logs = logs
        self.lock = threading.Lock()
        self.leaks: list[str] = []
        self.procs: set[subprocess.Popen] = set()
        self.active: dict[str, tuple[str, WorkerCgroup]] = {}
        self.hung: list[str] = []
        self.filter: str | None = None      # bats --filter
        self.done = threading.Event()
        threading.Thread(target=self.watchdog, daemon=True).start()

    def watchdog(self) -> None:
        while not self.done.wait(5):
            with self.lock:
                active = list(self.active.items())
            for tag, (runtime, cg) in active:
                for names, limit in (([runtime], COMMAND_TIMEOUT),
                                     (["/recvtty", "/seccompagent", "/sd-helper"], HELPER_TIMEOUT)):
                    for cmd in kill_hung(names, cg.dirs, limit):
                        with self.lock:
                            self.hung.append(f"{tag}: killed after {limit:.0f} s: {cmd}")

    def run_file(self, runtime: str, file: str) -> list[Outcome]:
        name = runtime_name(runtime)
        tag = f"{name}-{file.removesuffix('.bats')}"
        tmp = self.work / tag
        tmp.mkdir(mode=0o755)
        cg = WorkerCgroup(f"pyrun-bats-{os.getpid()}-{tag}")
        cg.create()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RUNC", "BATS", "PYTEST", "GO", "GIT"))}
        exe = runtime
        if name != "runc":
            # Installed under runc's name, as a drop-in is (`ln -s pyrun /usr/local/sbin/runc`):
            # pyrun names itself after argv[0], which help.bats and version.bats check.
            sbin = self.work / f"{tag}.sbin"     # beside TMPDIR, whose leftovers are leaks
            sbin.mkdir()
            exe = str(sbin / "runc")
            os.symlink(os.path.abspath(runtime), exe)
        env.update(build.bats_env(self.cache), RUNC=exe, TMPDIR=str(tmp), LANG="C.UTF-8")
        select = f" --filter {shlex.quote(self.filter)}" if self.filter else ""
        cmd = ["script", "-qefc", f"bats --tap{select} {file}", "/dev/null"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=self.integration, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                preexec_fn=cg.join, start_new_session=True)
        with self.lock:
            self.procs.add(proc)
            self.active[tag] = (exe, cg)
        try:
            out, _ = proc.communicate(timeout=FILE_TIMEOUT)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            timed_out = True
        with self.lock:
            self.procs.discard(proc)
            del self.active[tag]
        text = out.decode(errors="replace")
        (self.logs / f"{tag}.tap").write_text(text)
        outcomes = parse_tap(text, file, name)
        leaks = [f"{tag}: {x}" for x in cg.leftovers()]
        cg.destroy()
        left_mounts = mounts_under(str(tmp))
        if left_mounts:
            leaks += [f"{tag}: mount {m}" for m in left_mounts]
            unmount_all(left_mounts)
        # runc 1.2+'s helpers.bash makes an empty losetup.XXXXXX list in TMPDIR each time it loads
        left_files = [str(p) for p in tmp.iterdir()
                      if not (p.name.startswith("losetup.") and p.is_file() and not p.stat().st_size)]
        if left_files:
            leaks += [f"{tag}: file {p}" for p in left_files]
        shutil.rmtree(tmp, ignore_errors=True)
        if exe != runtime:
            shutil.rmtree(Path(exe).parent, ignore_errors=True)
        if timed_out:
            leaks.append(f"{tag}: timed out after {FILE_TIMEOUT} s")
        with self.lock:
            self.leaks += leaks
        print(f"  {tag:40} {sum(o.result == 'pass' for o in outcomes):3} pass "
              f"{sum(o.result == 'fail' for o in outcomes):3} fail "
              f"{sum(o.result == 'skip' for o in outcomes):3} skip  {time.monotonic() - t0:5.1f} s",
              flush=True)
        return outcomes

    def stop(self) -> None:
        with self.lock:
            for p in self.procs:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def run_jobs(runner: Runner, jobs: list[tuple[str, str]], workers: int) -> list[Outcome]:
    """Run (runtime, file) jobs on `workers` threads, never one file for two runtimes at once.

    The suite's absolute cgroups share one parent (/runc-cgroups-integration-test);
    a file's tests run side by side with the same file for another runtime
    would compete for it (update.bats' real-time budget cannot be given twice).
    And only pyrun puts a container's default cgroup below its own in every
    hierarchy: runc 1.1.5 on a hybrid host puts the cgroup v2 one at the root
    (/sys/fs/cgroup/unified/test_busybox), so two files' `test_busybox` would
    share it. Runtimes other than pyrun therefore run one file at a time.
    """
    cond = threading.Condition()
    pending = list(jobs)
    busy: set[str] = set()
    serial_busy: set[str] = set()

    def free(job: tuple[str, str]) -> bool:
        return job[1] not in busy and (runtime_name(job[0]) in NESTS_ALL_CGROUPS
                                       or job[0] not in serial_busy)
    outcomes: list[Outcome] = []
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with cond:
                while True:
                    job = next((j for j in pending if free(j)), None)
                    if job or not pending:
                        break
                    cond.wait()
                if job is None:
                    return
                pending.remove(job)
                busy.add(job[1])
                serial_busy.add(job[0])
            try:
                res = runner.run_file(*job)
            except BaseException as e:  # noqa: BLE001 - reported after the pool stops
                errors.append(e)
                res = []
            with cond:
                outcomes.extend(res)
                busy.discard(job[1])
                serial_busy.discard(job[0])
                cond.notify_all()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return outcomes


def clean_suite_parent(parent: Path) -> list[str]:
    """Empty and remove the suite's own absolute cgroup parent.

    Tests make cgroups below it themselves (mkdir, freezing some) and a test
    that fails before its cleanup leaves them: the failure is already in the
    results, so what is left here is reported, thawed, killed and removed.
    """
    notes = []
    for sub in sorted((d for d in parent.rglob("*") if d.is_dir()), key=lambda d: -len(str(d))):
        notes.append(f"left by a failed test, removed: {sub}")
        cg = WorkerCgroup.__new__(WorkerCgroup)
        cg.dirs = [str(sub)]
        state = sub / "freezer.state"
        if state.exists():
            state.write_text("THAWED")
        cg.destroy()
    try:
        parent.rmdir()
    except OSError as e:
        notes.append(f"cannot remove {parent}: {e}")
    return notes


def suite_parents() -> list[Path]:
    """Absolute cgroup parents the suite itself makes (set_cgroups_path) and never removes."""
    return [Path(m) / "runc-cgroups-integration-test" for m in Path("/sys/fs/cgroup").iterdir()]


def _own_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--source", type=Path, help="another runc source tree's suite")
    ap.add_argument("--filter", help="only tests whose name matches this regex (bats --filter); "
                                     "listed tests it excludes are not expected to run")


def main() -> int:
    args, runtimes = parse_args(__doc__, "bats.py", "PYRUN_BATS_JOBS",
                                "bats processes at once, over all runtimes (default 4)",
                                "file", "only this bats file (repeatable)",
                                _own_options)
    if not args.source:
        args.expected = args.expected or EXPECTED
    elif not args.expected:
        if args.update_expected:
            raise SystemExit("bats.py: --source --update-expected needs its own --expected list")
        args.expected = Path(os.devnull)     # nothing to compare with: results printed only

    t0 = time.monotonic()
    cache = build.build("bats")
    print(f"bats: build ready in {time.monotonic() - t0:.0f} s ({cache})", flush=True)
    tree = cache / "runc-1.1.5"
    if args.source:
        tree = args.source.resolve()
        build.prepare_source(cache, tree)
    files = args.file or sorted(p.name for p in (tree / "tests/integration").glob("*.bats"))
    files.sort(key=lambda f: (f not in SLOW_FIRST, SLOW_FIRST.index(f) if f in SLOW_FIRST else 0, f))

    work = Path(tempfile.mkdtemp(prefix="pyrun-bats.", dir="/var/tmp"))
    os.chmod(work, 0o755)
    logs = args.logs or work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    parents_before = {p for p in suite_parents() if p.exists()}
    tops_before = top_cgroups()
    loops_before = loop_devices()
    runner = Runner(cache, work, logs, tree)
    runner.filter = args.filter
    jobs = [(r, f) for f in files for r in runtimes]
    t1 = time.monotonic()
    try:
        outcomes = run_jobs(runner, jobs, max(1, args.jobs))
    except KeyboardInterrupt:
        runner.stop()
        raise
    elapsed = time.monotonic() - t1

    runner.done.set()
    notes = list(runner.hung)
    for p in suite_parents():
        if p.exists() and p not in parents_before:
            notes += clean_suite_parent(p)
    # other processes on a shared machine make cgroups too: shown, not removed
    notes += [f"new cgroup (not ours? check): {d}" for d in sorted(top_cgroups() - tops_before)
              if "/pyrun-bats-" not in d]
    new_loops = loop_devices() - loops_before
    runner.leaks += [f"loop device {x}" for x in sorted(new_loops)]

    print(f"\n{'runc v1.1.5' if not args.source else tree} tests/integration ({len(files)} files, {elapsed:.0f} s, -j{args.jobs}):")
    print(f"  {'runtime':8} {'pass':>5} {'fail':>5} {'skip':>5} {'total':>6}")
    for r in runtimes:
        name = runtime_name(r)
        mine = [o for o in outcomes if o.runtime == name]
        print(f"  {name:8} {sum(o.result == 'pass' for o in mine):5} {sum(o.result == 'fail' for o in mine):5}"
              f" {sum(o.result == 'skip' for o in mine):5} {len(mine):6}")

    expected = load_expected(args.expected) if args.expected.exists() else {}
    if args.update_expected:
        keep = {k: v for k, v in expected.items() if k[0] not in {runtime_name(r) for r in runtimes}
                or not any(k[1].startswith(f + ": ") for f in files)}
        others = [Outcome(k[0], k[1], v.result) for k, v in keep.items()]
        write_expected(args.expected, others + outcomes, expected, HEADER)
        print(f"bats: wrote {args.expected}")
        expected = load_expected(args.expected)
    scope = {(runtime_name(r), o) for r in runtimes for (rt, o) in expected
             if rt == runtime_name(r) and o.split(": ", 1)[0] in files
             and (not args.filter or re.search(args.filter, o.split(": ", 1)[1]))}
    cmp = compare(outcomes, expected, scope)
    print_unexpected(cmp, outcomes, runtimes, args.expected)
    if notes:
        print(f"\n{len(notes)} note(s) (not failures):")
        for note in notes:
            print(f"  {note}")
    return finish("bats", cmp, runner.leaks, work)

if __name__ == "__main__":
    sys.exit(main())
