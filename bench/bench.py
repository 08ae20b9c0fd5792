#!/usr/bin/env python3
"""pyrun against runc 1.1.5, runc 1.4.3 and crun: the same scenarios, interleaved, medians and ratios.

    .venv/bin/python bench/bench.py [--reps N] [--only run,lifecycle,...] [--docker] [--crictl]
                                    [--json FILE] [--markdown FILE]

Every repetition runs each runtime once, in a rotating order, so that load from
other processes on the machine hits all runtimes alike; medians are reported.
A runtime that refuses this host (crun on a hybrid cgroup host) is probed once
and shown as refused, with its own words.  Must run as root.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))     # dockerd.py: the private dockerd the tests use

from pyrun.tools.busybox_bundle import make_config, make_rootfs  # noqa: E402

RUNTIMES = {"pyrun": str(REPO / ".venv" / "bin" / "pyrun"), "runc": "/usr/sbin/runc",
            "runc-1.4": "", "crun": "/usr/bin/crun"}
# The current runc release, as a gzipped binary beside the project (shared/upstream/README.md);
# unpacked into the bench's work directory for each run.
RUNC_14_GZ = REPO.parent / "shared" / "upstream" / "runc-1.4.3-amd64.gz"
OTHERS = ("runc", "runc-1.4", "crun")      # pyrun's ratios are against each of these
SCENARIOS = ("floor", "run", "lifecycle", "exec", "kill", "parallel100", "state100", "list100", "memory",
             "limits", "docker", "crictl")
PREFIX = f"pyrun-bench-{os.getpid()}-"
MIB = 1024 * 1024
PR_SET_CHILD_SUBREAPER = 36
TIME = "/usr/bin/time"     # GNU time (Debian package "time")


# --- running one command ---------------------------------------------------------

class Result:
    """One command: wall time, exit status, stdout, stderr."""

    def __init__(self, seconds: float, status: int, out: str, err: str) -> None:
        self.seconds, self.status, self.out, self.err = seconds, status, out, err


def call(argv: list[str], stdout: bool = False) -> Result:
    """Run argv and time it, to its exit."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out if stdout else subprocess.DEVNULL,
                                stderr=err)
        _pid, status = os.waitpid(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        out.seek(0)
        return Result(seconds, proc.returncode, out.read().decode(errors="replace"),
                      err.read().decode(errors="replace").strip())


def reap_orphans() -> None:
    """We are a child subreaper (as a shim is): inits whose runtime exited come to us."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Runtime:
    def __init__(self, name: str, path: str, root: Path) -> None:
        self.name, self.path, self.root = name, path, root
        self.refused = ""     # why this runtime cannot run containers on this host

    def argv(self, *args: str) -> list[str]:
        return [self.path, "--root", str(self.root), *args]

    def __call__(self, *args: str, stdout: bool = False) -> Result:
        return call(self.argv(*args), stdout=stdout)

    def peak_rss(self, *args: str) -> tuple[Result, int]:
        """Run under GNU time, a small process: wait4's ru_maxrss of a child
        forked from this big Python would report our own RSS (kept across exec)."""
        with tempfile.NamedTemporaryFile("r") as f:
            res = call([TIME, "-f", "%M", "-o", f.name, *self.argv(*args)])
            return res, int(f.read().split()[-1])

    def force_delete(self, cid: str) -> None:
        self("delete", "--force", cid)
        reap_orphans()


# --- bundles ---------------------------------------------------------------------

class Bundles:
    """One busybox rootfs, many config.json: a bundle per argument list / resources."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.rootfs = workdir / "rootfs"
        make_rootfs(str(self.rootfs))
        self.count = 0

    def make(self, args: list[str], resources: dict[str, Any] | None = None) -> str:
        self.count += 1
        bundle = self.workdir / f"bundle{self.count}"
        bundle.mkdir()
        config = make_config(args, hostname="bench")
        config["root"]["path"] = str(self.rootfs)     # shared; runc refuses a symlinked rootfs
        config["ociVersion"] = "1.0.2"      # crun 1.8 refuses 1.3.0 as unknown
        if resources:
            config["linux"].setdefault("resources", {}).update(resources)
        (bundle / "config.json").write_text(json.dumps(config))
        return str(bundle)


# --- statistics ------------------------------------------------------------------

class Table:
    """scenario -> runtime -> list of samples (seconds, or bytes, or counts)."""

    def __init__(self) -> None:
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.units: dict[str, str] = {}
        self.notes: dict[str, str] = {}

    def add(self, scenario: str, runtime: str, value: float, unit: str = "ms") -> None:
        self.samples.setdefault(scenario, {}).setdefault(runtime, []).append(value)
        self.units[scenario] = unit

    def note(self, scenario: str, text: str) -> None:
        self.notes[scenario] = (self.notes.get(scenario, "") + " " + text).strip()

    def medians(self) -> dict[str, dict[str, float]]:
        return {s: {rt: statistics.median(v) for rt, v in by.items() if v}
                for s, by in self.samples.items()}

    def as_json(self, runtimes: list[Runtime], meta: dict[str, Any]) -> dict[str, Any]:
        med = self.medians()
        out: dict[str, Any] = {"meta": meta, "refused": {r.name: r.refused for r in runtimes if r.refused},
                               "scenarios": {}}
        for s, by in med.items():
            entry: dict[str, Any] = {"unit": self.units[s], "median": by,
                                     "samples": self.samples[s], "note": self.notes.get(s, "")}
            for other in OTHERS:
                if "pyrun" in by and by.get(other):
                    entry[f"pyrun/{other}"] = round(by["pyrun"] / by[other], 3)
            out["scenarios"][s] = entry
        for s, text in self.notes.items():
            out["scenarios"].setdefault(s, {"note": text})
        return out

    def markdown(self, data: dict[str, Any]) -> str:
        names = ["pyrun", *OTHERS]
        lines = ["| scenario | unit | " + " | ".join(names) + " | "
                 + " | ".join(f"pyrun/{o}" for o in OTHERS) + " | n |",
                 "|---|---|" + "---:|" * (len(names) + len(OTHERS) + 1)]
        for s, e in data["scenarios"].items():
            med = e.get("median", {})
            n = max((len(v) for v in e.get("samples", {}).values()), default=0)

            def cell(rt: str) -> str:
                if rt in med:
                    return _fmt(med[rt], e["unit"])
                return "refused" if rt in data["refused"] else "-"
            lines.append(f"| {s} | {e.get('unit', '')} | " + " | ".join(cell(rt) for rt in names) + " | "
                         + " | ".join(str(e.get(f"pyrun/{o}", "-")) for o in OTHERS) + f" | {n} |")
        notes = [f"- **{s}**: {e['note']}" for s, e in data["scenarios"].items() if e.get("note")]
        notes += [f"- **{rt} refused**: {why}" for rt, why in data["refused"].items()]
        return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _fmt(value: float, unit: str) -> str:
    return f"{value:.1f}" if unit == "ms" else f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def interleaved(runtimes: list[Runtime], reps: int) -> Iterator[tuple[int, Runtime]]:
    """Each repetition visits every runtime, starting one further along each time."""
    live = [r for r in runtimes if not r.refused]
    for rep in range(reps):
        k = rep % len(live) if live else 0
        for rt in live[k:] + live[:k]:
            yield rep, rt


# --- scenarios -------------------------------------------------------------------

class Bench:
    def __init__(self, runtimes: list[Runtime], bundles: Bundles, reps: int, table: Table) -> None:
        self.runtimes, self.bundles, self.reps, self.table = runtimes, bundles, reps, table
        self.true = bundles.make(["/bin/true"])
        self.sleep = bundles.make(["/bin/sleep", "100000"])
        self.serial = 0

    def cid(self) -> str:
        self.serial += 1
        return f"{PREFIX}{self.serial}"

    def rss(self, rt: Runtime, command: str, *args: str) -> Result:
        """One extra, untimed call of a command to learn its peak RSS."""
        res, kib = rt.peak_rss(command, *args)
        self._check(rt, command, res)
        self.table.add(f"peak RSS: {command}", rt.name, kib, "KiB")
        return res

    def probe(self) -> None:
        """A runtime that cannot run /bin/true here is left out, with its reason."""
        for rt in self.runtimes:
            cid = self.cid()
            res = rt("run", "--bundle", self.true, cid)
            if res.status != 0:
                rt.refused = res.err.splitlines()[-1] if res.err else f"exit {res.status}"
                rt.force_delete(cid)

    def floor(self) -> None:
        """What no runtime's code decides: its own start-up (`--version`), and
        the kernel's wait when a process joins a cgroup (every create and exec
        pays it once; see docs/performance.md)."""
        for _rep, rt in interleaved(self.runtimes, self.reps):
            res = rt("--version", stdout=True)
            self._check(rt, "--version", res)
            self.table.add("start-up (--version)", rt.name, res.seconds * 1000)
        waits = [cgroup_join_wait() for _ in range(min(self.reps, 10))]
        waits = [w for w in waits if w is not None]
        if waits:
            self.table.note("start-up (--version)", (
                f"the kernel's cgroup join: a process writing itself into a new cgroup's cgroup.procs, "
                f"the first writer after 0.2 s of quiet, waits a median {statistics.median(waits):.1f} ms "
                f"(min {min(waits):.1f}, max {max(waits):.1f}, n {len(waits)}) for an RCU grace period; "
                f"every runtime's create and exec pay it once."))

    def run(self) -> None:
        for _rep, rt in interleaved(self.runtimes, self.reps):
            res = rt("run", "--bundle", self.true, self.cid())
            self._check(rt, "run", res)
            self.table.add("run /bin/true", rt.name, res.seconds * 1000)
        for rt in self.live():
            self.rss(rt, "run", "--bundle", self.true, self.cid())

    def lifecycle(self) -> None:
        """What a shim does: create with a pid file, start, reap the init, delete."""
        pidfile = self.bundles.workdir / "pid"
        for _rep, rt in interleaved(self.runtimes, self.reps):
            cid = self.cid()
            c = rt("create", "--bundle", self.true, "--pid-file", str(pidfile), cid)
            self._check(rt, "create", c)
            s = rt("start", cid)
            self._check(rt, "start", s)
            pid = int(pidfile.read_text())
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            d = rt("delete", cid)
            self._check(rt, "delete", d)
            total = c.seconds + s.seconds + d.seconds
            self.table.add("create+start+delete", rt.name, total * 1000)
            for name, res in (("create", c), ("start", s), ("delete", d)):
                self.table.add(f"  {name}", rt.name, res.seconds * 1000)
        for rt in self.live():
            cid = self.cid()
            self.rss(rt, "create", "--bundle", self.true, "--pid-file", str(pidfile), cid)
            self.rss(rt, "start", cid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(pidfile.read_text()), 0)
            self.rss(rt, "delete", cid)

    def exec(self) -> None:
        ids = {}
        try:
            for rt in self.live():
                ids[rt.name] = cid = self.cid()
                self._check(rt, "run -d", rt("run", "-d", "--bundle", self.sleep, cid))
            for _rep, rt in interleaved(self.runtimes, self.reps):
                res = rt("exec", ids[rt.name], "/bin/true")
                self._check(rt, "exec", res)
                self.table.add("exec /bin/true", rt.name, res.seconds * 1000)
            for rt in self.live():
                self.rss(rt, "exec", ids[rt.name], "/bin/true")
        finally:
            for rt in self.live():
                if rt.name in ids:
                    rt.force_delete(ids[rt.name])

    def kill(self) -> None:
        """`kill ID KILL` on a running container (what a shim's Kill is), then delete, untimed."""
        for _rep, rt in interleaved(self.runtimes, self.reps):
            cid = self.cid()
            self._check(rt, "run -d", rt("run", "-d", "--bundle", self.sleep, cid))
            res = rt("kill", cid, "KILL")
            self._check(rt, "kill", res)
            self.table.add("kill (running)", rt.name, res.seconds * 1000)
            rt.force_delete(cid)
            reap_orphans()

    def hundred(self, scenarios: set[str]) -> None:
        """100 containers created 4 at a time; then state and list with all of them live."""
        ids: dict[str, list[str]] = {rt.name: [] for rt in self.runtimes}
        try:
            for rt in self.live():
                batch = [self.cid() for _ in range(100)]
                ids[rt.name] = batch
                start = time.perf_counter()
                with ThreadPoolExecutor(4) as pool:
                    results = list(pool.map(lambda c, rt=rt: rt("create", "--bundle", self.sleep, c), batch))
                took = time.perf_counter() - start
                for res in results:
                    self._check(rt, "create (parallel)", res)
                if "parallel100" in scenarios:
                    self.table.add("100 creates, 4 at a time", rt.name, took * 1000)
            for _rep, rt in interleaved(self.runtimes, self.reps):
                if "state100" in scenarios:
                    res = rt("state", ids[rt.name][50], stdout=True)
                    self._check(rt, "state", res)
                    self.table.add("state (100 live)", rt.name, res.seconds * 1000)
                if "list100" in scenarios:
                    res = rt("list", stdout=True)
                    self._check(rt, "list", res)
                    if res.out.count(PREFIX) < 100:
                        raise RuntimeError(f"{rt.name} list shows {res.out.count(PREFIX)} of 100 containers")
                    self.table.add("list (100 live)", rt.name, res.seconds * 1000)
            for rt in self.live():
                if "state100" in scenarios:
                    self.rss(rt, "state", ids[rt.name][50])
                if "list100" in scenarios:
                    self.rss(rt, "list")
        finally:
            for rt in self.live():
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda c, rt=rt: rt("delete", "--force", c), ids[rt.name]))
                reap_orphans()

    def memory(self) -> None:
        """Memory charged to the container's memory cgroup once `create` returned:
        everything the runtime's stages did in it before the user process starts."""
        for _rep, rt in interleaved(self.runtimes, self.reps):
            cid = self.cid()
            try:
                self._check(rt, "create", rt("create", "--bundle", self.true, cid))
                cg = memory_cgroup(rt, cid)
                usage = int((cg / "memory.usage_in_bytes").read_text())
                peak = int((cg / "memory.max_usage_in_bytes").read_text())
                self.table.add("memory charged at create (usage)", rt.name, usage / 1024, "KiB")
                self.table.add("memory charged at create (peak)", rt.name, peak / 1024, "KiB")
            finally:
                rt.force_delete(cid)

    def limits(self) -> None:
        """The smallest memory.limit / pids.limit under which `run /bin/true` exits 0,
        and whether the runtime applied the limit to the cgroup at all."""
        for rt in self.live():
            for kind, values, resources, limit_file in (
                    ("memory.limit", [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64],
                     lambda v: {"memory": {"limit": v * MIB}}, "memory.limit_in_bytes"),
                    ("pids.limit", [1, 2, 3, 4, 6, 8, 16, 32],
                     lambda v: {"pids": {"limit": v}}, "pids.max")):
                smallest = None
                for v in values:
                    bundle = self.bundles.make(["/bin/true"], resources(v))
                    cid = self.cid()
                    res = rt("run", "--bundle", bundle, cid)
                    rt.force_delete(cid)
                    if res.status == 0:
                        smallest = v
                        break
                unit = "MiB" if kind.startswith("memory") else "pids"
                self.table.add(f"smallest {kind} for /bin/true", rt.name,
                               smallest if smallest is not None else float("nan"), unit)
                applied = self._applied(rt, resources(values[-1]), kind.split(".")[0], limit_file,
                                        values[-1] * (MIB if unit == "MiB" else 1))
                if not applied:
                    self.table.note(f"smallest {kind} for /bin/true",
                                    f"{rt.name} does not apply {kind} (the cgroup shows no limit).")

    def _applied(self, rt: Runtime, resources: dict[str, Any], controller: str, name: str,
                 expected: int) -> bool:
        cid = self.cid()
        try:
            self._check(rt, "create", rt("create", "--bundle", self.bundles.make(["/bin/true"], resources), cid))
            path = cgroup_dir(rt, cid, controller) / name
            return int(path.read_text().strip().replace("max", "-1")) == expected
        finally:
            rt.force_delete(cid)

    def docker(self) -> None:
        from dockerd import missing_reason, running_dockerd
        reason = missing_reason()
        if reason:
            self.table.note("docker run --rm", f"skipped: {reason}")
            return
        # dockerd reserves the name "runc": every runtime is registered as bench-<name>
        live = {f"bench-{rt.name}": rt.path for rt in self.live()}
        with running_dockerd(live, rootfs=self.bundles.rootfs) as daemon:
            for rt in self.live():
                daemon.docker("run", "--rm", "--runtime", f"bench-{rt.name}", daemon.image, "/bin/true")  # warm-up
            for _rep, rt in interleaved(self.runtimes, self.reps):
                start = time.perf_counter()
                daemon.docker("run", "--rm", "--runtime", f"bench-{rt.name}", daemon.image, "/bin/true")
                self.table.add("docker run --rm /bin/true", rt.name, (time.perf_counter() - start) * 1000)

    def crictl(self) -> None:
        """A Kubernetes pod through containerd's CRI: `crictl runp` (the sandbox
        created and started) then one container created and started in it, per
        handler. The private containerd of tests/cri_daemon.py has two handlers,
        pyrun (this bench's) and runc (Debian's 1.1.5): runc-1.4 is not measured."""
        from containerd_daemon import CONTAINERD
        from cri_daemon import CriContainerd, new_workdir
        if CONTAINERD is None or not os.path.exists("/usr/lib/cni/loopback"):
            self.table.note("crictl runp + create + start", "skipped: containerd or the CNI loopback plugin missing")
            return
        from test_cri import Crictl, Pod, _crictl_binary
        binary = _crictl_binary()
        pyrun = next(rt.path for rt in self.runtimes if rt.name == "pyrun")
        handlers = [rt for rt in self.live() if rt.name in ("pyrun", "runc")]
        daemon = CriContainerd(new_workdir(), pyrun)
        try:
            daemon.start()
            daemon.import_busybox(self.bundles.rootfs)
            cri = Crictl(binary, daemon)
            for rep, rt in interleaved(handlers, self.reps + 1):
                pod = Pod(cri, rt.name)
                try:
                    start = time.perf_counter()
                    pod.run()
                    pod.create("app", "sleep", "1000")
                    took = (time.perf_counter() - start) * 1000
                finally:
                    pod.remove()
                if rep:     # the first round warms containerd's caches for both
                    self.table.add("crictl runp + create + start", rt.name, took)
        finally:
            daemon.stop(binary)

    # --

    def live(self) -> list[Runtime]:
        return [r for r in self.runtimes if not r.refused]

    @staticmethod
    def _check(rt: Runtime, what: str, res: Result) -> None:
        if res.status != 0:
            raise RuntimeError(f"{rt.name} {what} exited {res.status}: {res.err}")


def cgroup_dir(rt: Runtime, cid: str, controller: str) -> Path:
    """The container init's cgroup in one v1 hierarchy, from /proc/<pid>/cgroup."""
    pid = json.loads(rt("state", cid, stdout=True).out)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _n, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
    raise RuntimeError(f"no {controller} cgroup for {cid}")


def cgroup_join_wait() -> float | None:
    """ms a forked child blocks in write(cgroup.procs) joining a fresh cgroup
    (pids hierarchy on v1/hybrid, the cgroup2 root on v2) after 0.2 s without
    cgroup writes; None where neither is writable."""
    for base in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(base, "cgroup.procs")):
            break
    else:
        return None
    path = os.path.join(base, f"{PREFIX}join")
    os.mkdir(path)
    try:
        time.sleep(0.2)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            start = time.perf_counter()
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write("0")
            os.write(w, str(time.perf_counter() - start).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            took = float(f.read() or "nan")
        os.waitpid(pid, 0)
        return took * 1000
    finally:
        for _ in range(100):     # the reaped child may take a moment to leave
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.01)


def memory_cgroup(rt: Runtime, cid: str) -> Path:
    return cgroup_dir(rt, cid, "memory")


def machine(paths: dict[str, str]) -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        with contextlib.suppress(OSError), open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return "?"
    versions = {}
    for name, path in paths.items():
        with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
            versions[name] = subprocess.run([path, "--version"], capture_output=True, text=True,
                                            timeout=10).stdout.splitlines()[0]
    return {"kernel": platform.release(), "cpu": first("/proc/cpuinfo", "model name"),
            "cpus": os.cpu_count(), "memory": first("/proc/meminfo", "MemTotal"),
            "python": sys.version.split()[0], "versions": versions,
            "loadavg_before": os.getloadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def unpack_runc_14(workdir: Path) -> str:
    """The runc 1.4.3 binary from shared/upstream, unpacked and made executable."""
    import gzip
    target = workdir / "runc-1.4.3"
    with gzip.open(RUNC_14_GZ) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    target.chmod(0o755)
    return str(target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--only", default=",".join(s for s in SCENARIOS if s not in ("docker", "crictl")),
                    help=f"comma-separated, from: {','.join(SCENARIOS)}")
    ap.add_argument("--docker", action="store_true", help="add the docker run --rm scenario")
    ap.add_argument("--crictl", action="store_true", help="add the crictl pod scenario (containerd's CRI)")
    ap.add_argument("--runtimes", default="pyrun,runc,runc-1.4,crun")
    ap.add_argument("--pyrun", default=RUNTIMES["pyrun"])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("containers need root")
    scenarios = set(args.only.split(",")) | ({"docker"} if args.docker else set()) \
        | ({"crictl"} if args.crictl else set())
    unknown = scenarios - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    workdir = Path(tempfile.mkdtemp(prefix="pyrun-bench-"))
    paths = dict(RUNTIMES, pyrun=args.pyrun)
    if "runc-1.4" in args.runtimes.split(","):
        paths["runc-1.4"] = unpack_runc_14(workdir)
    table = Table()
    runtimes = [Runtime(n, paths[n], workdir / f"root-{n}") for n in args.runtimes.split(",")]
    meta = machine(paths)
    try:
        bench = Bench(runtimes, Bundles(workdir), args.reps, table)
        bench.probe()
        steps: list[tuple[str, Callable[[], None]]] = [
            ("floor", bench.floor), ("run", bench.run), ("lifecycle", bench.lifecycle), ("exec", bench.exec),
            ("kill", bench.kill),
            ("memory", bench.memory), ("limits", bench.limits), ("docker", bench.docker),
            ("crictl", bench.crictl)]
        for name, step in steps:
            if name in scenarios:
                print(f"# {name}", file=sys.stderr, flush=True)
                step()
        if scenarios & {"parallel100", "state100", "list100"}:
            print("# 100 containers", file=sys.stderr, flush=True)
            bench.hundred(scenarios)
    finally:
        for rt in runtimes:
            for cid in sorted(os.listdir(rt.root)) if rt.root.is_dir() else []:
                if cid.startswith(PREFIX):
                    rt.force_delete(cid)
        reap_orphans()
        shutil.rmtree(workdir, ignore_errors=True)
    meta["loadavg_after"] = os.getloadavg()
    meta["reps"] = args.reps
    meta["command"] = " ".join([Path(sys.executable).name, "bench/bench.py", *(argv or sys.argv[1:])])
    data = table.as_json(runtimes, meta)
    text = table.markdown(data)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
