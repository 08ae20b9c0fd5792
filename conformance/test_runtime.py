"""runtime.md: state, lifecycle, operations and their errors."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from conftest import Bundle, Runtime, fail_create, validate
from waiting import eventually

spec = pytest.mark.spec


def _create(runtime: Runtime, bundle: Bundle, *extra: str) -> str:
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), *extra, cid)
    return cid


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@spec("runtimeState", "format MUST adhere to the JSON Schema")
@spec("runtimeState", "they MUST be used to represent new runtime states not defined above")
@spec("runtimeQueryState", "This operation MUST return the state of a container")
@spec("runtimeScopeContainer", "MUST be able to use the operations defined")
@spec("runtimeOperations", "runtimes MUST support the following operations")
def test_state_at_each_step(runtime: Runtime, bundle: Bundle) -> None:
    """create -> created, start -> running, exit -> stopped; the JSON valid each time."""
    bundle.config["annotations"] = {"org.example.key": "value"}
    bundle.set_args("sh", "-c", "read x < /dev/stdin; sleep 30")
    cid = _create(runtime, bundle)
    st = runtime.state(cid)
    validate(st, "state-schema.json")      # status: one of the spec's values, no other
    assert st["id"] == cid and st["status"] == "created"
    assert st["bundle"] == str(bundle.path) and os.path.isabs(st["bundle"])
    assert st["pid"] > 0 and _pid_alive(st["pid"])
    assert st.get("annotations") == {"org.example.key": "value"}
    runtime("start", cid)
    st = runtime.wait_status(cid, "running")
    validate(st, "state-schema.json")
    assert st["status"] == "running" and st["pid"] > 0
    runtime("kill", cid, "KILL")
    st = runtime.wait_status(cid, "stopped")
    validate(st, "state-schema.json")
    assert st["status"] == "stopped"
    runtime("delete", cid)
    assert not runtime.exists(cid)


@spec("runtimeState", "This MUST be unique across all containers on this host")
@spec("runtimeCreate", "is not unique across all containers within the scope")
def test_create_with_existing_id_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.set_args("sleep", "30")
    cid = _create(runtime, bundle)
    pid = runtime.state(cid)["pid"]
    res = runtime("create", "--bundle", str(bundle.path), cid, check=False)
    assert res.rc != 0 and res.errors
    st = runtime.state(cid)
    assert (st["status"], st["pid"]) == ("created", pid), "the existing container was disturbed"
    runtime("delete", "--force", cid)


@spec("runtimeCreate", "MUST generate an error if it is not provided a path to the bundle")
def test_create_without_id_or_bundle_fails(runtime: Runtime, bundle: Bundle,
                                           tmp_path: Path) -> None:
    res = runtime("create", "--bundle", str(bundle.path), check=False)
    assert res.rc != 0 and res.errors
    cid = runtime.new_id()
    empty = tmp_path / "no-bundle"
    empty.mkdir()
    res = runtime("create", "--bundle", str(empty), cid, check=False)
    assert res.rc != 0 and res.errors
    assert not runtime.exists(cid)


def _proc_state(pid: int) -> str:
    """The state letter of /proc/pid/stat, "gone" once it has been reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@spec("runtimeCreate", "This operation MUST create a new container")
@spec("runtimeCreate", "process.args MUST NOT be applied until triggered by the start")
@spec("runtimeLifecycle", "the user-specified program (from process) MUST NOT be run at this time")
@spec("runtimeStart", "This operation MUST run the user-specified program")
@spec("runtimeLifecycle", "The runtime MUST run the user-specified program")
def test_program_runs_only_at_start(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                                    "options": ["rbind", "rw"]})
    bundle.set_args("sh", "-c", "echo ran > /out/ran")
    cid = _create(runtime, bundle)
    # No sleep-and-hope: the created init must block (waiting for start) without
    # having exec'd process.args. A runtime that runs them at create has an init
    # that execs sh, writes /out/ran and exits: it never sits blocked as itself.
    pid = runtime.state(cid)["pid"]
    eventually(lambda: _proc_state(pid) == "S", what="the created init to block waiting for start")
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3] != [b"sh", b"-c", b"echo ran > /out/ran"]
    assert not (out / "ran").exists(), "process.args ran at create"
    assert runtime.state(cid)["status"] == "created"
    runtime("start", cid)
    runtime.wait_status(cid, "stopped")
    assert (out / "ran").read_text() == "ran\n"
    runtime("delete", cid)


@spec("runtimeLifecycle", "Any updates to config.json after this step MUST NOT affect the container")
def test_config_changes_after_create_have_no_effect(runtime: Runtime, bundle: Bundle,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                                    "options": ["rbind", "rw"]})
    bundle.set_args("sh", "-c", "echo first > /out/which")
    cid = _create(runtime, bundle)
    bundle.set_args("sh", "-c", "echo second > /out/which")
    runtime("start", cid)
    runtime.wait_status(cid, "stopped")
    assert (out / "which").read_text() == "first\n"
    runtime("delete", cid)


@spec("runtimeQueryState", "MUST generate an error if it is not provided the ID")
@spec("runtimeQueryState", "query a container that does not exist MUST generate an error")
@spec("runtimeStart", "MUST generate an error if it is not provided the container ID")
@spec("runtimeKill", "MUST generate an error if it is not provided the container ID")
@spec("runtimeDelete", "MUST generate an error if it is not provided the container ID")
def test_operations_without_or_with_unknown_id_fail(runtime: Runtime) -> None:
    for op in (("state",), ("start",), ("kill",), ("delete",)):
        res = runtime(*op, check=False)
        assert res.rc != 0, f"{op[0]} without an ID succeeded"
        assert res.errors, (op, res.stderr)        # a level:error log entry, not silence
    res = runtime("state", "oci-conformance-no-such-container", check=False)
    assert res.rc != 0 and res.errors


@spec("runtimeStart", "start a container that is not created MUST have no effect")
def test_start_on_running_or_stopped_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.set_args("sleep", "30")
    cid = _create(runtime, bundle)
    runtime("start", cid)
    st = runtime.wait_status(cid, "running")
    res = runtime("start", cid, check=False)
    assert res.rc != 0 and res.errors
    assert runtime.state(cid) == st, "start on a running container changed it"
    runtime("kill", cid, "KILL")
    runtime.wait_status(cid, "stopped")
    res = runtime("start", cid, check=False)
    assert res.rc != 0 and res.errors
    assert runtime.state(cid)["status"] == "stopped"
    runtime("delete", cid)


@spec("runtimeKill", "neither created nor running MUST have no effect")
def test_kill_on_stopped_fails(runtime: Runtime, bundle: Bundle) -> None:
    cid = _create(runtime, bundle)
    runtime("start", cid)
    st = runtime.wait_status(cid, "stopped")
    res = runtime("kill", cid, "TERM", check=False)
    assert res.rc != 0 and res.errors
    assert runtime.state(cid) == st
    runtime("delete", cid)


@spec("runtimeDelete", "delete a container that is not stopped MUST have no effect")
def test_delete_on_created_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.set_args("sleep", "30")
    cid = _create(runtime, bundle)
    st = runtime.state(cid)
    res = runtime("delete", cid, check=False)
    still = runtime.state(cid) if runtime.exists(cid) else None
    alive = _pid_alive(st["pid"])
    runtime("delete", "--force", cid, check=False)
    assert res.rc != 0 and res.errors, "delete of a created container succeeded"
    assert still == st and alive


@spec("runtimeDelete", "delete a container that is not stopped MUST have no effect")
def test_delete_on_running_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.set_args("sleep", "30")
    cid = _create(runtime, bundle)
    runtime("start", cid)
    st = runtime.wait_status(cid, "running")
    res = runtime("delete", cid, check=False)
    assert res.rc != 0 and res.errors
    assert runtime.state(cid) == st and _pid_alive(st["pid"])
    runtime("delete", "--force", cid)


@spec("runtimeKill", "This operation MUST send the specified signal to the container process")
def test_kill_delivers_the_signal(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                                    "options": ["rbind", "rw"]})
    bundle.set_args("sh", "-c", "trap 'echo USR1 >> /out/sig' USR1; trap 'echo HUP >> /out/sig' HUP; "
                    "echo ready > /out/ready; while :; do sleep 0.1; done")
    cid = _create(runtime, bundle)
    runtime("start", cid)
    eventually(lambda: (out / "ready").exists(), what="the traps to be set")
    runtime("kill", cid, "USR1")
    runtime("kill", cid, str(int(signal.SIGHUP)))
    eventually(lambda: len((out / "sig").read_text().split()) >= 2, what="both traps to run",
               ignore=(FileNotFoundError,))
    assert sorted((out / "sig").read_text().split()) == ["HUP", "USR1"]
    assert runtime.state(cid)["status"] == "running"
    runtime("kill", cid, "KILL")
    runtime.wait_status(cid, "stopped")
    runtime("delete", cid)


@spec("runtimeKill", "This operation MUST send the specified signal to the container process")
def test_kill_a_created_container(runtime: Runtime, bundle: Bundle) -> None:
    """A created container can be signalled; SIGKILL stops it before it ever runs."""
    bundle.set_args("sleep", "30")
    cid = _create(runtime, bundle)
    runtime("kill", cid, "KILL")
    assert runtime.wait_status(cid, "stopped")["status"] == "stopped"
    runtime("delete", cid)


@spec("runtimeDelete", "MUST delete the resources that were created during the create step")
@spec("runtimeLifecycle", "The container MUST be destroyed by undoing the steps")
def test_delete_removes_what_create_made(runtime: Runtime, bundle: Bundle) -> None:
    """After delete: the ID is free, no process, no cgroup (checked by the fixture too)."""
    bundle.set_args("sleep", "30")
    cid = _create(runtime, bundle)
    pid = runtime.state(cid)["pid"]
    cgroups = _cgroup_paths(pid)
    runtime("kill", cid, "KILL")
    runtime.wait_status(cid, "stopped")
    runtime("delete", cid)
    assert not runtime.exists(cid)
    assert not _pid_alive(pid)
    for path in cgroups:
        assert not path.exists(), f"{path} survived delete"
    # the ID may be used again
    cid2 = runtime("create", "--bundle", str(bundle.path), cid, check=False)
    assert cid2.rc == 0, cid2.stderr
    runtime("delete", "--force", cid)


def _cgroup_paths(pid: int) -> list[Path]:
    """The container's own cgroup directories (v1 controllers and v2)."""
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if path in ("", "/"):
                continue
            if controllers == "":
                base = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified").exists() \
                    else Path("/sys/fs/cgroup")
            else:
                name = controllers.replace("name=", "")
                base = Path("/sys/fs/cgroup") / name
            if (base / path.lstrip("/")).exists():
                out.append(base / path.lstrip("/"))
    return out


@spec("runtimeDelete", "resources associated with the container, but not created by this container, MUST NOT be deleted")
def test_delete_keeps_what_it_did_not_create(runtime: Runtime, bundle: Bundle,
                                              tmp_path: Path) -> None:
    """A bind-mounted host directory and its files, and the bundle, survive delete."""
    src = tmp_path / "shared"
    src.mkdir()
    (src / "keep").write_text("mine")
    bundle.config["mounts"].append({"destination": "/shared", "type": "bind", "source": str(src),
                                    "options": ["rbind", "rw"]})
    bundle.set_args("sh", "-c", "echo container > /shared/made")
    cid = _create(runtime, bundle)
    runtime("start", cid)
    runtime.wait_status(cid, "stopped")
    runtime("delete", cid)
    assert (src / "keep").read_text() == "mine" and (src / "made").exists()
    assert (bundle.path / "config.json").exists() and (bundle.rootfs / "bin" / "busybox").exists()


@spec("runtimeErrors", "generating an error MUST leave the state of the environment as if the operation were never attempted")
@spec("runtimeCreate", "If the runtime cannot apply a property as specified")
@spec("runtimeLifecycle", "If the runtime is unable to create the environment")
def test_failed_create_leaves_nothing(runtime: Runtime, bundle: Bundle) -> None:
    """A mount that cannot be made: error, no container, no cgroup, no process (fixture)."""
    bundle.config["mounts"].append({"destination": "/x", "type": "no-such-fs-type",
                                    "source": "none"})
    fail_create(runtime, bundle)


@spec("runtimeStart", "This operation MUST generate an error if process was not set")
def test_start_without_process_fails(runtime: Runtime, bundle: Bundle) -> None:
    del bundle.config["process"]
    bundle.write()
    cid = runtime.new_id()
    res = runtime("create", "--bundle", str(bundle.path), cid, check=False)
    if res.rc == 0:           # a runtime may refuse at create already; else start must
        res = runtime("start", cid, check=False)
        runtime("delete", "--force", cid, check=False)
    assert res.rc != 0 and res.errors


@spec("runtimeWarnings", "logging a warning does not change the flow")
def test_warning_does_not_stop_the_operation(runtime: Runtime, bundle: Bundle,
                                             tmp_path: Path) -> None:
    """A failing poststop hook is a warning: delete still succeeds and removes the container."""
    bundle.config["hooks"] = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}
    cid = _create(runtime, bundle)
    runtime("start", cid)
    runtime.wait_status(cid, "stopped")
    res = runtime("delete", cid, check=False)
    assert res.rc == 0, res.stderr
    assert not runtime.exists(cid)


