"""process.scheduler (sched_setattr(2)) and process.ioPriority (ioprio_set(2)).

Both run in the init, before the capability drop: raising the priority of a
real-time policy needs CAP_SYS_NICE, which the default config does not keep.
Both settings survive execve, so the container's process starts with them.

`validate` is meant for `create` (one-line ConfigError naming the field,
before anything is forked); `apply` re-checks and reports failures as OSError
so the init names its step.
"""
from __future__ import annotations

import ctypes
import errno
import os
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError

_libc = ctypes.CDLL(None, use_errno=True)
_SYS = {
    "x86_64": {"sched_setattr": 314, "ioprio_set": 251},
    "aarch64": {"sched_setattr": 274, "ioprio_set": 30},
}[os.uname().machine]

# include/uapi/linux/sched.h
POLICIES = {
    "SCHED_OTHER": 0,
    "SCHED_FIFO": 1,
    "SCHED_RR": 2,
    "SCHED_BATCH": 3,
    "SCHED_ISO": 4,        # reserved by the kernel, never implemented: it answers EINVAL
    "SCHED_IDLE": 5,
    "SCHED_DEADLINE": 6,
}
FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01,
    "SCHED_FLAG_RECLAIM": 0x02,
    "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08,
    "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}
_REALTIME = ("SCHED_FIFO", "SCHED_RR")

# include/uapi/linux/ioprio.h
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1


class SchedAttr(ctypes.Structure):
    """struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes, with the util clamps)."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


# --- validation ------------------------------------------------------------------

def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field}: must be an integer, not {value!r}")
    return value


def _scheduler_attr(sched: dict[str, Any]) -> SchedAttr:
    """The sched_attr for process.scheduler; ConfigError naming the field if invalid.

    The rules are sched_setattr(2)'s, checked here so that the error names the
    field instead of the kernel's bare EINVAL (runc checks the same ones)."""
    field = "process.scheduler"
    if not isinstance(sched, dict):
        raise ConfigError(f"{field}: must be an object")
    policy = sched.get("policy")
    if not policy:
        raise ConfigError(f"{field}.policy: is required")
    if policy not in POLICIES:
        raise ConfigError(f"{field}.policy: unknown scheduling policy {policy!r}")
    nice = _int(sched.get("nice", 0), f"{field}.nice")
    priority = _int(sched.get("priority", 0), f"{field}.priority")
    runtime = _int(sched.get("runtime", 0), f"{field}.runtime")
    deadline = _int(sched.get("deadline", 0), f"{field}.deadline")
    period = _int(sched.get("period", 0), f"{field}.period")
    if not -20 <= nice <= 19:
        raise ConfigError(f"{field}.nice: {nice} is out of range (-20 to 19)")
    if policy in _REALTIME:
        if not 1 <= priority <= 99:
            raise ConfigError(f"{field}.priority: {policy} needs a priority from 1 to 99, not {priority}")
    elif priority != 0:
        raise ConfigError(f"{field}.priority: can only be set for SCHED_FIFO or SCHED_RR, not {policy}")
    if policy == "SCHED_DEADLINE":
        if deadline == 0 or runtime == 0:
            raise ConfigError(f"{field}: SCHED_DEADLINE needs runtime and deadline")
        if runtime < 1024:
            raise ConfigError(f"{field}.runtime: SCHED_DEADLINE needs at least 1024 ns, not {runtime}")
        if runtime > deadline or (period and deadline > period):
            raise ConfigError(f"{field}: SCHED_DEADLINE needs runtime <= deadline <= period")
    elif runtime or deadline or period:
        raise ConfigError(f"{field}: runtime, deadline and period can only be set for SCHED_DEADLINE")
    for value, name in ((runtime, "runtime"), (deadline, "deadline"), (period, "period")):
        if not 0 <= value < 2**64:
            raise ConfigError(f"{field}.{name}: {value} is out of range")
    flags = 0
    for i, name in enumerate(sched.get("flags") or []):
        if name not in FLAGS:
            raise ConfigError(f"{field}.flags[{i}]: unknown scheduling flag {name!r}")
        flags |= FLAGS[name]
    attr = SchedAttr()
    attr.size = ctypes.sizeof(SchedAttr)
    attr.sched_policy = POLICIES[policy]
    attr.sched_flags = flags
    attr.sched_nice = nice
    attr.sched_priority = priority
    attr.sched_runtime = runtime
    attr.sched_deadline = deadline
    attr.sched_period = period
    # util clamps: the spec has no values, so a clamp flag resets to the full range
    attr.sched_util_min = 0
    attr.sched_util_max = 1024
    return attr


def _ioprio_value(io: dict[str, Any]) -> int:
    field = "process.ioPriority"
    if not isinstance(io, dict):
        raise ConfigError(f"{field}: must be an object")
    cls = io.get("class")
    if cls not in IOPRIO_CLASSES:
        raise ConfigError(f"{field}.class: unknown I/O priority class {cls!r}")
    prio = _int(io.get("priority", 0), f"{field}.priority")     # absent: 0, as runc (upstream schema: only class required)
    if not 0 <= prio <= 7:
        raise ConfigError(f"{field}.priority: {prio} is out of range (0 to 7)")
    return IOPRIO_CLASSES[cls] << IOPRIO_CLASS_SHIFT | prio


def validate(process: dict[str, Any]) -> None:
    """Refuse a bad process.scheduler or process.ioPriority before anything runs."""
    if process.get("scheduler") is not None:
        _scheduler_attr(process["scheduler"])
    if process.get("ioPriority") is not None:
        _ioprio_value(process["ioPriority"])


# --- applying (in the init) ------------------------------------------------------

def _fail(what: str, hint: str = "") -> OSError:
    err = ctypes.get_errno()
    text = os.strerror(err)
    return OSError(err, f"{what}: {text[:1].lower()}{text[1:]}{hint}")


# runc's words (libcontainer's setupScheduler), which its scheduler.bats looks for
ALLOWED_CPUS = "process scheduler can't be used together with AllowedCPUs"


def apply(process: dict[str, Any], cpuset: str = "") -> None:
    """sched_setattr and ioprio_set on the calling process (pid 0).

    `cpuset` is the container's linux.resources.cpu.cpus: with one, EPERM is
    read as runc reads it, whatever the policy: the cpuset narrows the task's
    affinity, which SCHED_DEADLINE refuses (sched_setattr(2))."""
    try:
        attr = _scheduler_attr(process["scheduler"]) if process.get("scheduler") is not None else None
        ioprio = _ioprio_value(process["ioPriority"]) if process.get("ioPriority") is not None else None
    except ConfigError as e:
        raise OSError(errno.EINVAL, str(e)) from None
    if attr is not None:
        if _libc.syscall(_SYS["sched_setattr"], 0, ctypes.byref(attr), 0) < 0:
            policy = process["scheduler"]["policy"]
            if ctypes.get_errno() == errno.EPERM and cpuset:
                raise OSError(errno.EPERM, ALLOWED_CPUS)
            hint = ""
            if ctypes.get_errno() == errno.EPERM and policy in _REALTIME:
                # CONFIG_RT_GROUP_SCHED: a new cpu cgroup has no real-time budget
                hint = (" (the container's cpu cgroup may need real-time time: "
                        "linux.resources.cpu.realtimeRuntime)")
            raise _fail(f"process.scheduler: sched_setattr {policy}", hint)
    if ioprio is not None:
        if _libc.syscall(_SYS["ioprio_set"], IOPRIO_WHO_PROCESS, 0, ioprio) < 0:
            io = process["ioPriority"]
            raise _fail(f"process.ioPriority: ioprio_set {io['class']} {io['priority']}")
