"""CPU affinity of the container's processes (runc 1.2+ cpu_affinity.bats): a runtime started
under `taskset` does not pass its affinity on, the cpuset does; process.execCPUAffinity gives
an exec'd process its initial and final affinity."""
from __future__ import annotations

import json
import os

import pytest

GREP = ["grep", "Cpus_allowed_list:", "/proc/self/status"]
OURS = os.sched_getaffinity(0)      # the test's own: the host CPUs the container's cgroup allows

pytestmark = pytest.mark.skipif(len(OURS) < 2, reason="needs two CPUs to tell affinities apart")
FIRST, SECOND = sorted(OURS)[:2]


def _pinned_to_first() -> None:
    os.sched_setaffinity(0, {FIRST})


def _cpus(line: str) -> set[int]:
    """`Cpus_allowed_list:\t0-1,3` as {0, 1, 3}."""
    out: set[int] = set()
    for part in line.split()[1].split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def test_run_under_taskset_does_not_pass_its_affinity_on(pyrun, bundle):
    """Before: the container ran on FIRST only, as pyrun did."""
    bundle.set_args(*GREP)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), preexec_fn=_pinned_to_first).stdout
    assert _cpus(out) == OURS


def test_run_under_taskset_gets_its_cpuset(pyrun, bundle):
    bundle.config["linux"].setdefault("resources", {})["cpu"] = {"cpus": str(SECOND), "mems": "0"}
    bundle.set_args(*GREP)
    out = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), preexec_fn=_pinned_to_first).stdout
    assert _cpus(out) == {SECOND}


def test_exec_under_taskset_does_not_pass_its_affinity_on(pyrun, running):
    out = pyrun("exec", running, *GREP, preexec_fn=_pinned_to_first).stdout
    assert _cpus(out) == OURS


@pytest.mark.parametrize("affinity, expected", [
    ({"initial": "SECOND"}, "SECOND"),                      # kept: no final, no reset
    ({"initial": "FIRST", "final": "SECOND"}, "SECOND"),
    ({"final": "FIRST"}, "FIRST"),
])
def test_exec_cpu_affinity(pyrun, running, tmp_path, affinity, expected):
    """process.execCPUAffinity (runtime-spec 1.3). Before: ignored, the exec'd process got ours."""
    names = {"FIRST": str(FIRST), "SECOND": str(SECOND)}
    process = {"args": GREP, "cwd": "/", "terminal": False, "env": ["PATH=/bin"],
               "execCPUAffinity": {k: names[v] for k, v in affinity.items()}}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    out = pyrun("exec", "--process", str(path), running).stdout
    assert _cpus(out) == {int(names[expected])}


def test_exec_initial_affinity_is_logged_as_runc_logs_it(pyrun, running, tmp_path):
    """cpu_affinity.bats reads runc's nsexec debug line for the initial affinity."""
    process = {"args": ["true"], "cwd": "/", "terminal": False, "env": ["PATH=/bin"],
               "execCPUAffinity": {"initial": str(SECOND)}}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    res = pyrun("exec", "--process", str(path), running, global_args=("--debug",))
    lines = [line for line in res.stderr.splitlines() if ": affinity: " in line]
    assert len(lines) == 1 and "nsexec" in lines[0] and lines[0].endswith(f": affinity: {1 << SECOND:#x}\"")


def test_bad_final_affinity_fails_the_exec(pyrun, running, tmp_path):
    """A CPU that does not exist: runc's words, exit 255, nothing left running."""
    process = {"args": ["sleep", "100"], "cwd": "/", "terminal": False, "env": ["PATH=/bin"],
               "execCPUAffinity": {"final": "4095"}}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    res = pyrun("exec", "--process", str(path), running, check=False)
    assert res.returncode == 255
    assert "error setting final CPU affinity: invalid argument" in res.stderr
    assert [line.split()[-2:] for line in pyrun("ps", running).stdout.splitlines()[1:]] == [["sleep", "300"]]
