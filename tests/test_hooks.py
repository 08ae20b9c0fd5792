"""OCI hooks: order, namespaces, the state each one gets, and failure semantics
(runtime.md "Lifecycle", config.md "POSIX-platform Hooks")."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[Path, Path]:
    """A host script that appends `<kind> <mnt ns> <pid ns> <stdin>` to a log."""
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\n"
                      f'echo "$1 $(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/pid) '
                      f'$HOOK_ENV $(cat)" >> {log}\n')
    script.chmod(0o755)
    return script, log


def _entries(log: Path) -> list[tuple[str, str, str, str, dict]]:
    out = []
    for line in log.read_text().splitlines():
        kind, mnt, pid, env, state = line.split(" ", 4)
        out.append((kind, mnt, pid, env, json.loads(state)))
    return out


def _hook(script: Path, kind: str, **extra) -> dict:
    return {"path": str(script), "args": ["hook.sh", kind], "env": [f"HOOK_ENV={kind}-env"], **extra}


def test_hooks_run_in_order_with_the_right_state_and_namespaces(pyrun, bundle, recorder):
    script, log = recorder
    bundle.config["annotations"] = {"a": "b"}
    bundle.config["hooks"] = {k: [_hook(script, k)] for k in KINDS if k != "startContainer"}
    # startContainer's path resolves in the container: the image's own shell.
    bundle.config["hooks"]["startContainer"] = [{
        "path": "/bin/sh", "args": ["sh", "-c", "echo startContainer $(cat) > /start-hook.out"]}]
    bundle.set_args("sh", "-c", "echo user-process")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    pid = pyrun.state(cid)["pid"]
    container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    host_mnt, host_pid = os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/self/ns/pid")
    pyrun("start", cid)
    pyrun.wait_status(cid, "stopped")
    pyrun("delete", cid)

    entries = _entries(log)
    assert [e[0] for e in entries] == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    by_kind = {e[0]: e for e in entries}
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):      # runtime namespace
        assert by_kind[kind][1:3] == (host_mnt, host_pid), kind
    assert by_kind["createContainer"][1] == container_mnt                   # container namespace
    assert by_kind["createContainer"][2] != host_pid
    for kind, status in (("prestart", "creating"), ("createRuntime", "creating"),
                         ("createContainer", "creating"), ("poststart", "running"), ("poststop", "stopped")):
        state = by_kind[kind][4]
        assert state["status"] == status and state["id"] == cid, kind
        assert state["bundle"] == str(bundle.path) and state["annotations"] == {"a": "b"}
        assert by_kind[kind][3] == f"{kind}-env"                            # the hook's own env
    assert by_kind["prestart"][4]["pid"] == pid == by_kind["poststart"][4]["pid"]
    assert by_kind["createContainer"][4]["pid"] == 1                       # as seen in the container
    started = json.loads((bundle.rootfs / "start-hook.out").read_text().split(" ", 1)[1])
    assert started["status"] == "created" and started["pid"] == 1


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hooks_fail_create_and_clean_up(pyrun, bundle, recorder, kind):
    script, log = recorder
    bundle.config["hooks"] = {kind: [{"path": "/bin/sh", "args": ["sh", "-c", "echo oops >&2; exit 3"]},
                                     _hook(script, kind)]}
    bundle.write()
    cid = pyrun.new_id()
    res = pyrun("create", "-b", str(bundle.path), cid, check=False)
    assert res.returncode == 1
    assert f"error running {kind} hook #0: exit status 3" in res.stderr and "oops" in res.stderr
    assert not log.exists()                   # the hooks after the failing one did not run
    assert not (pyrun.root / cid).exists()


def test_failing_start_container_hook_fails_start_and_stops(pyrun, bundle):
    bundle.config["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]}
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    res = pyrun("start", cid, check=False, global_args=("--log-format", "json"))
    assert res.returncode == 1, res
    entry = json.loads(res.stderr)      # exactly one entry; the step after runc's words and as its own field
    assert entry["msg"] == ("unable to start container process: error during container init: "
                            "error running startContainer hook #0: exit status 4, stdout: , stderr:  (step: wait for start)"), entry
    assert entry["step"] == "wait for start", entry
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    pyrun("delete", cid)


def test_start_container_hook_without_env_gets_the_process_env(pyrun, bundle):
    """As runc's (1.2+ hooks.bats "startContainer hook should inherit process environment"):
    the hook runs in the container with the process's env, HOME included. Before: pyrun's own."""
    bundle.config["process"]["env"] = ["ONE=two", "PATH=/bin"]
    bundle.config["hooks"] = {"startContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", 'echo "$ONE $HOME $PATH" > /hook-env']}]}
    bundle.set_args("true")
    pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert (bundle.rootfs / "hook-env").read_text() == "two /root /bin\n"


def test_hook_killed_by_a_signal_is_named_as_runc_names_it(pyrun, bundle):
    """runc reports a hook's death with Go's signal words: a startContainer
    hook runs under the container's seccomp filter, and its SIGSYS reads
    "signal: bad system call" (runc's seccomp.bats greps it)."""
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                         "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}
    bundle.config["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "mkdir /tmp/d"]}]}
    bundle.set_args("true")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert res.returncode == 1
    assert "error running startContainer hook #0: signal: bad system call, stdout: , stderr: " in res.stderr, res.stderr
    assert not (bundle.rootfs / "tmp" / "d").exists()


def test_failing_poststart_hook_fails_start_and_stops_the_container(pyrun, bundle):
    bundle.config["hooks"] = {"poststart": [{"path": "/bin/false"}]}
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    res = pyrun("start", cid, check=False)
    assert res.returncode == 1 and "error running poststart hook #0: exit status 1" in res.stderr
    assert pyrun.wait_status(cid, "stopped")["status"] == "stopped"
    pyrun("delete", cid)


def test_failing_poststop_hook_is_a_warning_and_the_rest_run(pyrun, bundle, recorder, tmp_path):
    script, log = recorder
    bundle.config["hooks"] = {"poststop": [{"path": "/bin/false"}, _hook(script, "poststop")]}
    bundle.set_args("true")
    cid = pyrun.new_id()
    pyrun("run", "--keep", "-b", str(bundle.path), cid)
    logfile = tmp_path / "log.json"
    res = pyrun("delete", cid, global_args=("--log", str(logfile), "--log-format", "json"))
    assert res.returncode == 0
    assert [e[0] for e in _entries(log)] == ["poststop"]
    entries = [json.loads(line) for line in logfile.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["warning"]
    assert "poststop hook #0" in entries[0]["msg"]
    assert not (pyrun.root / cid).exists()


def test_hook_timeout(pyrun, bundle):
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]}
    bundle.write()
    res = pyrun("create", "-b", str(bundle.path), pyrun.new_id(), check=False)
    assert res.returncode == 1 and "hook ran past specified timeout of 1.0s" in res.stderr


def test_hook_output_stays_out_of_the_container_stream(pyrun, bundle):
    bundle.config["hooks"] = {k: [{"path": "/bin/echo", "args": ["echo", f"noise-from-{k}"]}]
                              for k in ("prestart", "createRuntime", "poststart", "poststop")}
    bundle.set_args("echo", "only-this")
    res = pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    assert res.stdout == "only-this\n" and res.stderr == ""
