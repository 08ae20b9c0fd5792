"""config.md POSIX-platform Hooks and runtime.md lifecycle steps 3-13 about hooks.

Each hook appends its name to a log and saves its stdin (the state) and the
mount namespace it ran in.  Hooks in the runtime namespace use a script that
exists only on the host; startContainer uses one that exists only in the rootfs
(its path MUST resolve in the container namespace).  The log directory is
bind-mounted into the container at /hooklog so that in-container hooks can
write it too.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from conftest import Bundle, Runtime, host_ns, validate
from waiting import eventually

spec = pytest.mark.spec

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
RUNTIME_NS = {"prestart", "createRuntime", "poststart", "poststop"}
SCRIPT = """#!/bin/sh
# a hook: record who we are and what we were told
dir=$1; name=$2; rc=${3:-0}
cat > "$dir/$name.state"
readlink /proc/self/ns/mnt > "$dir/$name.mnt"
readlink /proc/self/ns/pid > "$dir/$name.pidns"
echo "$name" >> "$dir/order"
exit "$rc"
"""


class Hooks:
    def __init__(self, bundle: Bundle, tmp: Path) -> None:
        self.bundle = bundle
        self.log = tmp / "hooklog"
        self.log.mkdir(mode=0o777)
        self.host_script = tmp / "host-only-hook.sh"          # not inside the rootfs
        self.host_script.write_text(SCRIPT)
        self.host_script.chmod(0o755)
        ctr = bundle.rootfs / "container-only-hook.sh"         # not on the host at that path
        ctr.write_text(SCRIPT)
        ctr.chmod(0o755)
        bundle.config["mounts"].append({"destination": "/hooklog", "type": "bind",
                                        "source": str(self.log), "options": ["rbind", "rw"]})
        bundle.config["hooks"] = {}

    def add(self, kind: str, rc: int = 0, tag: str = "") -> None:
        name = tag or kind
        if kind == "startContainer":
            hook = {"path": "/container-only-hook.sh", "args": ["hook", "/hooklog", name, str(rc)]}
        else:
            hook = {"path": str(self.host_script), "args": ["hook", str(self.log), name, str(rc)]}
        self.bundle.config["hooks"].setdefault(kind, []).append(hook)
        self.bundle.write()

    def order(self) -> list[str]:
        f = self.log / "order"
        return f.read_text().split() if f.exists() else []

    def state(self, name: str) -> dict:
        return json.loads((self.log / f"{name}.state").read_text())

    def mnt(self, name: str) -> int:
        return int((self.log / f"{name}.mnt").read_text().strip().split("[")[1].rstrip("]"))


@pytest.fixture
def hooks(bundle: Bundle, tmp_path: Path) -> Hooks:
    return Hooks(bundle, tmp_path)


def _lifecycle(runtime: Runtime, bundle: Bundle, hooks: Hooks) -> tuple[str, dict]:
    """create, start, wait for exit, delete; the orders seen after each step."""
    cid = runtime.new_id()
    seen = {}
    runtime("create", "--bundle", str(bundle.path), cid)
    seen["create"] = hooks.order()
    seen["pid"] = runtime.state(cid)["pid"]
    seen["ctr_mnt"] = os.stat(f"/proc/{seen['pid']}/ns/mnt").st_ino
    runtime("start", cid)
    seen["start"] = hooks.order()
    runtime.wait_status(cid, "stopped")
    seen["stopped"] = hooks.order()
    runtime("delete", cid)
    seen["delete"] = hooks.order()
    return cid, seen


@spec("configHooks", "Hooks MUST be called in the listed order")
@spec("configHooksPrestart", "MUST be called before the createRuntime hooks")
@spec("configHooksCreateContainer", "MUST be called after the createRuntime hooks")
@spec("configHooksPrestart", "MUST be called as part of the create operation")
@spec("configHooksCreateRuntime", "MUST be called as part of the create operation")
@spec("configHooksCreateContainer", "MUST be called as part of the create operation")
@spec("configHooksStartContainer", "MUST be called before the user-specified process is executed")
@spec("configHooksPoststart", "MUST be called after the user-specified process is executed")
@spec("configHooksPoststop", "MUST be called after the container is deleted")
@spec("runtimeLifecycle", "The prestart hooks MUST be invoked by the runtime")
@spec("runtimeLifecycle", "The createRuntime hooks MUST be invoked by the runtime")
@spec("runtimeLifecycle", "The createContainer hooks MUST be invoked by the runtime")
@spec("runtimeLifecycle", "The startContainer hooks MUST be invoked by the runtime")
@spec("runtimeLifecycle", "The poststart hooks MUST be invoked by the runtime")
@spec("runtimeLifecycle", "The poststop hooks MUST be invoked by the runtime")
def test_hooks_run_in_order_at_their_operation(runtime: Runtime, bundle: Bundle, hooks: Hooks) -> None:
    for kind in KINDS:
        hooks.add(kind, tag=f"{kind}1")
        hooks.add(kind, tag=f"{kind}2")
    # the process itself leaves a mark: startContainer before it, poststart after it
    bundle.set_args("sh", "-c", "echo process >> /hooklog/order")
    _, seen = _lifecycle(runtime, bundle, hooks)
    create = [f"{k}{i}" for k in ("prestart", "createRuntime", "createContainer") for i in (1, 2)]
    assert seen["create"] == create, "create ran the wrong hooks or in the wrong order"
    start = seen["start"][len(create):]
    assert start[:2] == ["startContainer1", "startContainer2"]
    assert "process" in seen["stopped"], "the process never ran"
    after = seen["stopped"][len(create) + 2:]
    # the process and poststart run concurrently; poststart is done when start returns
    assert sorted(after) == sorted(["process", "poststart1", "poststart2"])
    assert {"poststart1", "poststart2"} <= set(start), "poststart had not run when start returned"
    assert after.index("poststart1") < after.index("poststart2")
    assert seen["delete"][len(seen["stopped"]):] == ["poststop1", "poststop2"]


@spec("configHooks", "The state of the container MUST be passed to hooks over stdin")
def test_hooks_get_the_state_on_stdin(runtime: Runtime, bundle: Bundle, hooks: Hooks) -> None:
    for kind in KINDS:
        hooks.add(kind)
    bundle.config["annotations"] = {"org.example.hooks": "yes"}
    bundle.write()
    cid, seen = _lifecycle(runtime, bundle, hooks)
    for kind in KINDS:
        st = hooks.state(kind)
        validate(st, "state-schema.json")
        assert st["id"] == cid and st["bundle"] == str(bundle.path), kind
        assert st.get("annotations") == {"org.example.hooks": "yes"}, kind
    for kind in ("prestart", "createRuntime", "poststart"):
        assert hooks.state(kind)["pid"] == seen["pid"], f"{kind}: pid as seen by the runtime"
    assert hooks.state("poststart")["status"] == "running"


@spec("configHooks", "The prestart hooks MUST be executed in the runtime namespace")
@spec("configHooks", "The createRuntime hooks MUST be executed in the runtime namespace")
@spec("configHooks", "The createContainer hooks MUST be executed in the container namespace")
@spec("configHooks", "The startContainer hooks MUST be executed in the container namespace")
@spec("configHooks", "The poststart hooks MUST be executed in the runtime namespace")
@spec("configHooks", "The poststop hooks MUST be executed in the runtime namespace")
@spec("configHooksPrestart", "The prestart hooks MUST be executed in the runtime namespace")
@spec("configHooksCreateRuntime", "The createRuntime hooks MUST be executed in the runtime namespace")
@spec("configHooksCreateContainer", "MUST be executed in the container namespace")
@spec("configHooksStartContainer", "MUST be executed in the container namespace")
@spec("configHooksPoststart", "The poststart hooks MUST be executed in the runtime namespace")
@spec("configHooksPoststop", "The poststop hooks MUST be executed in the runtime namespace")
def test_hooks_run_in_their_namespace(runtime: Runtime, bundle: Bundle, hooks: Hooks) -> None:
    for kind in KINDS:
        hooks.add(kind)
    _, seen = _lifecycle(runtime, bundle, hooks)
    for kind in KINDS:
        want = host_ns("mnt") if kind in RUNTIME_NS else seen["ctr_mnt"]
        assert hooks.mnt(kind) == want, f"{kind} ran in the wrong mount namespace"


@spec("configHooks", "The value of path MUST resolve in the runtime namespace", nth=1)
@spec("configHooks", "The value of path MUST resolve in the runtime namespace", nth=2)
@spec("configHooks", "The value of path MUST resolve in the runtime namespace", nth=3)
@spec("configHooks", "The value of path MUST resolve in the container namespace")
@spec("configHooks", "The value of path MUST resolve in the runtime namespace", nth=4)
@spec("configHooks", "The value of path MUST resolve in the runtime namespace", nth=5)
@spec("configHooksPrestart", "path MUST resolve in the runtime namespace")
@spec("configHooksCreateRuntime", "path MUST resolve in the runtime namespace")
@spec("configHooksCreateContainer", "path MUST resolve in the runtime namespace")
@spec("configHooksStartContainer", "path MUST resolve in the container namespace")
@spec("configHooksPoststart", "path MUST resolve in the runtime namespace")
@spec("configHooksPoststop", "path MUST resolve in the runtime namespace")
def test_hook_paths_resolve_in_their_namespace(runtime: Runtime, bundle: Bundle,
                                               hooks: Hooks) -> None:
    """Host-only script for the runtime-side hooks and createContainer; a rootfs-only
    script for startContainer: every one of them must have run."""
    for kind in KINDS:
        hooks.add(kind)
    _lifecycle(runtime, bundle, hooks)
    assert sorted(hooks.order()) == sorted(KINDS)


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
@spec("runtimeLifecycle", "If any prestart hook fails")
@spec("runtimeLifecycle", "If any createRuntime hook fails")
@spec("runtimeLifecycle", "If any createContainer hook fails")
def test_create_hook_failure(runtime: Runtime, bundle: Bundle, hooks: Hooks, kind: str) -> None:
    """error, the container stopped and destroyed (step 12), poststop run (step 13)."""
    hooks.add(kind, rc=1)
    hooks.add(kind, tag="after")
    hooks.add("poststop")
    bundle.set_args("sh", "-c", "echo process >> /hooklog/order")
    cid = runtime.new_id()
    res = runtime("create", "--bundle", str(bundle.path), cid, check=False)
    assert res.rc != 0 and res.errors, "create succeeded though a hook failed"
    exists = runtime.exists(cid)
    if exists:
        runtime("delete", "--force", cid, check=False)
    assert not exists, "the container was not destroyed"
    order = hooks.order()
    assert "after" not in order and "process" not in order
    assert order[-1] == "poststop", f"poststop did not run after the failure: {order}"


def _stopped_or_deleted(runtime: Runtime, cid: str) -> str:
    """"stopped" or "deleted" once the container is one of them; the last status seen otherwise."""
    seen = ["deleted"]

    def settled() -> bool:
        seen[0] = runtime.state(cid)["status"] if runtime.exists(cid) else "deleted"
        return seen[0] in ("stopped", "deleted")
    with contextlib.suppress(AssertionError):    # the caller's assert names what was seen
        eventually(settled, what=f"{cid} stopped or deleted", interval=0.05)
    return seen[0]


@spec("runtimeLifecycle", "If any startContainer hook fails")
def test_start_container_hook_failure(runtime: Runtime, bundle: Bundle, hooks: Hooks) -> None:
    hooks.add("startContainer", rc=1)
    hooks.add("poststop")
    bundle.set_args("sh", "-c", "echo process >> /hooklog/order")
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid)
    res = runtime("start", cid, check=False)
    assert res.rc != 0 and res.errors, "start succeeded though startContainer failed"
    # the runtime may stop the container a moment after start returns: wait for that
    state = _stopped_or_deleted(runtime, cid)
    runtime("delete", "--force", cid, check=False)
    assert state in ("stopped", "deleted"), f"container {state} after a failed startContainer"
    order = hooks.order()
    assert "process" not in order
    assert order[-1] == "poststop", f"poststop did not run after the failure: {order}"


@spec("runtimeLifecycle", "If any poststart hook fails")
def test_poststart_hook_failure(runtime: Runtime, bundle: Bundle, hooks: Hooks) -> None:
    hooks.add("poststart", rc=1)
    hooks.add("poststop")
    bundle.set_args("sleep", "30")
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid)
    res = runtime("start", cid, check=False)
    assert res.rc != 0 and res.errors, "start succeeded though poststart failed"
    state = _stopped_or_deleted(runtime, cid)
    runtime("delete", "--force", cid, check=False)
    assert state in ("stopped", "deleted"), f"container {state} after a failed poststart"
    assert hooks.order()[-1] == "poststop"


@spec("runtimeLifecycle", "If any poststop hook fails, the runtime MUST log a warning")
def test_poststop_failure_is_a_warning(runtime: Runtime, bundle: Bundle, hooks: Hooks) -> None:
    hooks.add("poststop", rc=1, tag="first")
    hooks.add("poststop", tag="second")
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid)
    runtime("start", cid)
    runtime.wait_status(cid, "stopped")
    res = runtime("delete", cid, check=False)
    assert res.rc == 0, f"delete failed on a poststop failure: {res.stderr}"
    assert hooks.order() == ["first", "second"], "the remaining poststop hooks did not run"
    assert "warn" in res.stderr.lower(), f"no warning logged: {res.stderr!r}"
    assert not runtime.exists(cid)


@pytest.mark.parametrize("kind,nth", [("prestart", 1), ("createRuntime", 2)])
@spec("configHooks", "This specification extends the IEEE standard in that path MUST be absolute", nth=1)
@spec("configHooks", "This specification extends the IEEE standard in that path MUST be absolute", nth=2)
@spec("configExtensibility", "Runtimes MUST generate an error when invalid or unsupported values")
def test_relative_hook_path_is_refused(runtime: Runtime, bundle: Bundle, kind: str, nth: int) -> None:
    from conftest import fail_create
    bundle.config["hooks"] = {kind: [{"path": "bin/true"}]}
    fail_create(runtime, bundle)


@spec("configHooks", "If set, timeout MUST be greater than zero", nth=1)
@spec("configHooks", "If set, timeout MUST be greater than zero", nth=2)
def test_zero_hook_timeout_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    """On a poststop hook (every kind has the same entry schema): nothing runs during
    create, so only validation can refuse it, not a timer that fires at once."""
    from conftest import fail_create
    bundle.config["hooks"] = {"poststop": [{"path": "/bin/true", "timeout": 0}]}
    fail_create(runtime, bundle)
