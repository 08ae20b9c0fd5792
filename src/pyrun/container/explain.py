"""`pyrun explain`: the plan create and start would carry out, without doing it.

Every entry comes from the code that performs it: the init's PLANS (the
actions each step of process/init.py STEPS executes), stage 1's
bootstrap_plan, and the parent's plan functions that create and the
launcher also trace from (container/create.py, process/launcher.py); cgroup
limit files come from the limit writers themselves, run dry (manager.record_writes).
Nothing is created: no state directory, cgroup, fifo, cache or process.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun.container import create as c


def explain(root: str, container_id: str, bundle: str | None = None, config_file: str | None = None,
            rootless_flag: str = "auto", no_pivot: bool = False, no_new_keyring: bool = False,
            pid_file: str | None = None, console_socket: str | None = None) -> dict[str, Any]:
    from pyrun import log
    from pyrun.cgroups import manager
    from pyrun.process import init, launcher
    from pyrun.process.context import LaunchContext
    from pyrun.process.stages import bootstrap_plan
    from pyrun.spec.load import load_bundle
    from pyrun.state.store import validate_id

    validate_id(container_id)
    if config_file:
        bundle = os.path.dirname(os.path.abspath(config_file))
    loaded = load_bundle(bundle, None, os.path.basename(config_file) if config_file else "config.json")
    spec = loaded.config
    warnings: list[str] = []
    c._check_host_support(spec)
    c._check_id_mappings(spec)
    if (spec.get("process") or {}).get("capabilities"):
        from pyrun.container.capsets import drop_ungrantable
        warnings.extend(drop_ungrantable(spec["process"]))
    linux, process = spec.get("linux") or {}, spec.get("process") or {}
    c._check_terminal(bool(process.get("terminal")),
                      c.CreateRequest(root=root, id=container_id, console_socket=console_socket))

    parent: list[tuple[str, list[dict[str, Any]]]] = [("claim state directory", c.claim_plan(root, container_id))]
    cgroup, warning = manager.planned(spec, container_id, rootless_flag)
    if warning:
        warnings.append(warning)
    cgroup.check(linux.get("resources"))
    parent.append(("make cgroup", cgroup.plan(spec)))
    parent.append(("compile seccomp", c.seccomp_plan(spec)))
    new, join = c.namespaces_of(spec)
    ctx = LaunchContext(container_id=container_id, spec=spec, bundle=loaded.path, rootfs=loaded.rootfs,
                        fifo_fd=-1, cgroup=cgroup, cgroup_binds=cgroup.binds, new_namespaces=new,
                        join_namespaces=join, no_pivot=no_pivot, no_new_keyring=no_new_keyring)
    if linux.get("seccomp"):
        from pyrun.seccomp import compile_filter
        ctx.seccomp = compile_filter(linux["seccomp"])     # in memory: the cache is not written
    if "user" in new:
        parent.append(("write id maps", launcher.id_map_plan(linux)))
    parent.extend(launcher.mount_source_steps(spec, loaded.path, ctx.rootfs_names))
    hooks = launcher.hooks_plan(spec)
    if hooks:
        parent.append(("run prestart and createRuntime hooks", hooks))
    if process.get("rlimits"):
        parent.append(("prlimit the init", launcher.rlimits_plan(process)))
    written = manager.record_writes(dry=True)
    when = "procHooks" if hooks else "procReady"
    try:
        try:
            cgroup.update(linux.get("resources"))
        except manager.CgroupError as e:    # create would fail there: say it as create would
            from pyrun.errors import START_FAILED, PyrunError
            raise PyrunError(f"{START_FAILED}: error setting cgroup config for {when} process: {e}") from None
        parent.append(("write cgroup limits", [{"do": "write", "when": when, **w} for w in written]))
    finally:
        manager.stop_recording()
    parent.append(("record state", c.record_plan(os.path.join(root, container_id), pid_file)))

    it = init.Init(ctx, None)    # type: ignore[arg-type]
    it.detail = True
    with open("/proc/sys/kernel/cap_last_cap") as f:
        it.last_cap = int(f.read())
    try:
        with open("/proc/self/setgroups") as f:
            it.setgroups_denied = f.read().strip() == "deny" and "user" not in new
    except FileNotFoundError:
        pass
    log.debug(f"explain {container_id}: planned without creating anything")
    return {
        "id": container_id,
        "bundle": loaded.path,
        "rootfs": loaded.rootfs,
        "warnings": warnings,
        "namespaces": {"create": new, "join": join},
        "stages": [
            {"stage": "parent", "steps": _steps(parent)},
            {"stage": "stage 1", "steps": _steps(bootstrap_plan(ctx))},
            {"stage": "init", "steps": _steps(init.plan(it))},
        ],
    }


def _steps(pairs: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    return [{"step": name, "actions": actions} for name, actions in pairs]


def text(plan: dict[str, Any]) -> str:
    """A person's view: stages, numbered steps, one line per action."""
    out = [f"container {plan['id']} from bundle {plan['bundle']} (rootfs {plan['rootfs']})"]
    for w in plan["warnings"]:
        out.append(f"warning: {w}")
    ns = plan["namespaces"]
    out.append("namespaces: create " + (", ".join(ns["create"]) or "none") + "; join " +
               (", ".join(f"{t} ({p})" for t, p in ns["join"].items()) or "none") +
               "; the host's: " + (", ".join(t for t in ALL_NAMESPACES
                                            if t not in ns["create"] and t not in ns["join"]) or "none"))
    for stage in plan["stages"]:
        out.append("")
        out.append(stage["stage"] + ":")
        for i, step in enumerate(stage["steps"], 1):
            if not step["actions"]:
                out.append(f"  {i:2}. {step['step']}: nothing to do")
                continue
            out.append(f"  {i:2}. {step['step']}")
            for act in step["actions"]:
                out.append("        - " + _action(act))
    return "\n".join(out) + "\n"


ALL_NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


def _action(act: dict[str, Any]) -> str:
    words = [str(act.get("do"))]
    for key, value in act.items():
        if key in ("do", "numbers", "masks", "index"):
            continue
        if isinstance(value, list):
            value = "[" + ", ".join(_short(v) for v in value) + "]"
        elif isinstance(value, dict):
            value = "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
        words.append(f"{key}={value}")
    return " ".join(words)


def _short(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={x}" for k, x in v.items()) + "}"
    return str(v)
