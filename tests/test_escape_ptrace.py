"""Item 9 (CVE-2016-9962 class): no pyrun process in a container's pid
namespace is ever traceable by the container.

A container without a user namespace but with CAP_SYS_PTRACE passes every
ptrace check on the processes of its pid namespace, pyrun's own included
(non-dumpable does not stop it).  The attacker here is a small static C
program, pid 1 of container A, that loops PTRACE_SEIZE and PTRACE_ATTACH over
every pid of its namespace but its own.  Container B then lives its whole
life in A's pid namespace (`linux.namespaces` path): its init is born there,
runs a createContainer hook, waits as `created` while `pyrun exec` runs a
process into it, runs a startContainer hook at `start`, and gets another
`exec` once running.  Every process the attacker seizes, it stops and
records with the identity (st_dev:st_ino) of its /proc/<pid>/exe and its
comm; none may be the runtime's interpreter.  Once the programs of B run
(B's `sleep`, the hooks', the exec'd shells), the attacker does seize them:
that is the proof the attack itself works here.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PYRUN, new_bundle, proc_state, status_fields
from waiting import eventually

GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(GCC is None, reason="gcc builds the attack program")

# Until /done exists: every pid 1..MAXPID but ours, PTRACE_SEIZE on even
# rounds and PTRACE_ATTACH on odd ones.  A seized process is stopped
# (PTRACE_INTERRUPT, or ATTACH's SIGSTOP), identified, and let go.
ATTACKER = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXPID 400

int main(void) {
    pid_t self = getpid();
    FILE *log = fopen("/attack.log", "w");
    if (!log) return 1;
    setvbuf(log, NULL, _IOLBF, 0);
    long rounds = 0, errors[2] = {0, 0};
    for (;;) {
        int attach = rounds & 1;
        for (pid_t pid = 1; pid <= MAXPID; pid++) {
            if (pid == self) continue;
            long r = attach ? ptrace(PTRACE_ATTACH, pid, 0, 0) : ptrace(PTRACE_SEIZE, pid, 0, 0);
            if (r != 0) {
                if (errno == EPERM) errors[attach]++;
                continue;
            }
            if (!attach) ptrace(PTRACE_INTERRUPT, pid, 0, 0);
            int status;
            if (waitpid(pid, &status, __WALL) < 0 || !WIFSTOPPED(status)) continue;
            /* ATTACH: pass on any other signal until the SIGSTOP it sent
               is the stop, or that SIGSTOP would stop it for good; not the
               SIGTRAP an execve sends an ATTACHed tracee (it would kill it). */
            while (attach && WSTOPSIG(status) != SIGSTOP) {
                ptrace(PTRACE_CONT, pid, 0, WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status));
                if (waitpid(pid, &status, __WALL) < 0 || !WIFSTOPPED(status)) break;
            }
            if (!WIFSTOPPED(status)) continue;
            char path[64], comm[64] = "?";
            struct stat st;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int known = stat(path, &st) == 0;
            snprintf(path, sizeof path, "/proc/%d/comm", pid);
            int fd = open(path, O_RDONLY);
            if (fd >= 0) {
                ssize_t n = read(fd, comm, sizeof comm - 1);
                comm[n > 0 ? n : 0] = 0;
                comm[strcspn(comm, "\n")] = 0;
                close(fd);
            }
            fprintf(log, "SEIZED %d %lu:%lu %s %s\n", pid, known ? (unsigned long)st.st_dev : 0UL,
                    known ? (unsigned long)st.st_ino : 0UL, comm, attach ? "ATTACH" : "SEIZE");
            /* SEIZE: a signal that arrived before the interrupt goes on with it. */
            ptrace(PTRACE_DETACH, pid, 0, !attach && (status >> 16) == 0 ? WSTOPSIG(status) : 0);
        }
        if (++rounds == 1) close(creat("/ready", 0644));
        if (access("/done", F_OK) == 0) break;
    }
    fprintf(log, "END rounds=%ld eperm_seize=%ld eperm_attach=%ld\n", rounds, errors[0], errors[1]);
    return 0;
}
"""


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ptrace")
    (out / "attack.c").write_text(ATTACKER)
    subprocess.run([GCC, "-O1", "-static", "-o", str(out / "attack"), str(out / "attack.c")], check=True)
    return out / "attack"


def _with_ptrace(config: dict) -> None:
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")


def _exe_id(pid: int) -> str:
    st = os.stat(f"/proc/{pid}/exe")
    return f"{st.st_dev}:{st.st_ino}"


def test_the_container_never_seizes_a_runtime_process(pyrun, bundle, tmp_path, rootfs_template, attacker):
    """Checked: with the guard removed (guard.spawn writing "go" without
    seizing stage 1), the attacker's log holds SEIZED lines of the created
    init with the runtime interpreter's identity (both SEIZE and ATTACH),
    and this test fails on them."""
    a = new_bundle(tmp_path / "attacker", rootfs_template, "/attack")
    shutil.copy(attacker, a.rootfs / "attack")
    _with_ptrace(a.config)
    a.write()
    a_id = pyrun.new_id()
    pyrun("run", "-d", "-b", str(a.path), a_id, stdin=subprocess.DEVNULL)
    log = a.rootfs / "attack.log"
    try:
        eventually((a.rootfs / "ready").exists, timeout=20, what="the attacker looping")
        a_pid = pyrun.state(a_id)["pid"]

        # B: born into the attacker's pid namespace; hooks that fork inside it.
        bundle.join_namespace("pid", f"/proc/{a_pid}/ns/pid")
        bundle.config["hooks"] = {
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 0.2"]}],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 0.2"]}],
        }
        bundle.set_args("sleep", "300")
        b_id = pyrun.new_id()
        pyrun("create", "-b", str(bundle.path), b_id, stdin=subprocess.DEVNULL)
        try:
            init = pyrun.state(b_id)["pid"]
            runtime = _exe_id(init)      # the created init: pyrun's interpreter
            runtime_comm = Path(f"/proc/{init}/comm").read_text().strip()
            pyrun("exec", b_id, "sh", "-c", "sleep 0.2", stdin=subprocess.DEVNULL)
            assert pyrun.state(b_id)["status"] == "created"
            pyrun("start", b_id)
            pyrun("exec", b_id, "sh", "-c", "sleep 0.2", stdin=subprocess.DEVNULL)
            # The attack works on what is not pyrun's: B's own program, once it runs.
            eventually(lambda: " sleep " in log.read_text(), timeout=20, what="the attacker seizing B's sleep")
        finally:
            pyrun("delete", "-f", b_id)
        (a.rootfs / "done").touch()
        eventually(lambda: "END " in log.read_text(), timeout=20, what="the attacker's last round")
    finally:
        pyrun("delete", "-f", a_id)
    lines = log.read_text().splitlines()
    seized = [line.split() for line in lines if line.startswith("SEIZED ")]
    assert [s for s in seized if s[2] == runtime or s[3] == runtime_comm] == [], "\n".join(lines)
    assert lines[-1].startswith("END "), lines


def _tracer(pid: int) -> int:
    return int(status_fields(Path(f"/proc/{pid}/status").read_text())["TracerPid"])


def test_the_guard_holds_the_created_init_then_lets_the_program_go(pyrun, bundle):
    """While `created`, the init's tracer is the guard: outside the
    container's cgroup, holding no fd at all (not the caller's stdio: a shim
    reading create's output to its end would wait for it).  SIGSTOP and
    SIGCONT from `kill` stop and resume the init as they would untraced.  At
    `start` the guard detaches as the program is exec'd, and exits."""
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid, stdin=subprocess.DEVNULL)
    try:
        pid = pyrun.state(cid)["pid"]
        guard = _tracer(pid)
        assert guard != 0
        assert Path(f"/proc/{guard}/cgroup").read_text() != Path(f"/proc/{pid}/cgroup").read_text()
        eventually(lambda: os.listdir(f"/proc/{guard}/fd") == [], timeout=10, what="the guard holding no fd")
        pyrun("kill", cid, "STOP")
        eventually(lambda: proc_state(pid) in ("T", "t"), timeout=10, what="the init stopped")
        pyrun("kill", cid, "CONT")
        eventually(lambda: proc_state(pid) == "S", timeout=10, what="the init waiting for start again")
        assert pyrun.state(cid)["status"] == "created"
        pyrun("start", cid)
        eventually(lambda: Path(f"/proc/{pid}/comm").read_text() == "sleep\n", timeout=10, what="sleep running")
        assert _tracer(pid) == 0
        eventually(lambda: proc_state(guard) in ("gone", "Z"), timeout=10, what="the guard exited")
    finally:
        pyrun("delete", "-f", cid)


def test_a_signal_still_ends_a_created_init(pyrun, bundle):
    """The init's handlers see SIGTERM through the guard, which passes every
    signal on: `kill` of a created container stops it, as without a tracer."""
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid, stdin=subprocess.DEVNULL)
    pid = pyrun.state(cid)["pid"]
    assert _tracer(pid) != 0
    pyrun("kill", cid, "TERM")
    pyrun.wait_status(cid, "stopped", timeout=10)
    pyrun("delete", cid)


def test_seccomp_trace_rules_still_fail_with_enosys(pyrun, bundle):
    """SCMP_ACT_TRACE without a tracer that asked for seccomp stops gives
    ENOSYS; the guard asks for none, so the init's own execve under the
    filter fails as it would untraced (runc: the same error).
    Checked: with PTRACE_O_TRACESECCOMP added to the guard's options, the
    guard resumes the seccomp stop and `true` runs: exit 0."""
    bundle.config["process"]["noNewPrivileges"] = True     # the filter is loaded last, right before exec
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["execve", "execveat"], "action": "SCMP_ACT_TRACE"}]}
    bundle.set_args("/bin/true")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False, stdin=subprocess.DEVNULL)
    # execve's failure, as runc 1.4.3 reports it (tests/test_init_failures.py): the
    # process's one line on its stderr and its exit status 255
    assert (res.returncode, res.stderr) == (255, "exec /bin/true: function not implemented\n"), res


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace holds the stages first")
def test_a_stage_someone_else_traces_fails_the_command_cleanly(pyrun, bundle):
    """If the guard cannot seize stage 1 (someone traced it first, as an
    attacker who won the race would), stage 1 is killed and the command fails
    with one clear line, leaving nothing behind.  `strace -f` on pyrun holds
    every process pyrun forks before the guard can."""
    cid = pyrun.new_id()
    res = subprocess.run(["strace", "-f", "-o", "/dev/null", str(PYRUN), "--root", str(pyrun.root),
                          "run", "-b", str(bundle.path), cid],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res
    assert res.stderr.count("\n") == 1, res
    assert re.search(r"pyrun run failed: unable to start container process: error during container init: "
                     r"cannot trace the runtime's stage 1 \(pid \d+\): operation not permitted \(step: guard against ptrace\)",
                     res.stderr), res
    assert pyrun("state", cid, check=False).returncode == 1
