"""`update`: change the limits of a live container and remember them.

As runc, the new values are merged into the resources recorded in
state.json (some depend on each other: memory and memory+swap, cfs quota and
period), the whole merged set is written again, and the merge is saved so
the next update starts from it.  Device rules are never touched here.
"""
from __future__ import annotations

import copy
from typing import Any

from pyrun import errors
from pyrun.errors import PyrunError
from pyrun.state.status import STOPPED, status_of
from pyrun.state.store import ContainerDir

# section -> (key, JSON type name, Go struct name) that `update` reads, with runc's types
FIELDS: dict[str, tuple[str, dict[str, str]]] = {
    "memory": ("LinuxMemory", {"limit": "int64", "reservation": "int64", "swap": "int64",
                               "kernel": "int64", "kernelTCP": "int64", "swappiness": "uint64",
                               "disableOOMKiller": "bool", "useHierarchy": "bool",
                               "checkBeforeUpdate": "bool"}),
    "cpu": ("LinuxCPU", {"shares": "uint64", "quota": "int64", "burst": "uint64", "period": "uint64",
                         "realtimeRuntime": "int64", "realtimePeriod": "uint64", "cpus": "string",
                         "mems": "string", "idle": "int64"}),
    "blockIO": ("LinuxBlockIO", {"weight": "uint16", "leafWeight": "uint16", "weightDevice": "array",
                                 "throttleReadBpsDevice": "array", "throttleWriteBpsDevice": "array",
                                 "throttleReadIOPSDevice": "array", "throttleWriteIOPSDevice": "array"}),
    "pids": ("LinuxPids", {"limit": "int64"}),
}
# runc's update merges only these; anything else in the input is accepted and ignored
MERGED = {
    "memory": ("limit", "reservation", "swap", "checkBeforeUpdate"),
    "cpu": ("period", "quota", "burst", "shares", "realtimePeriod", "realtimeRuntime", "idle", "cpus", "mems"),
    "blockIO": ("weight", "leafWeight"),
}
# per-device lists runc (>= 1.3) upserts by major:minor, with the fields of an entry
DEVICE_LISTS = {"weightDevice": ("LinuxWeightDevice", {"weight": "uint16", "leafWeight": "uint16"}),
                **{k: ("LinuxThrottleDevice", {"rate": "uint64"})
                   for k in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                             "throttleReadIOPSDevice", "throttleWriteIOPSDevice")}}


def validate(res: Any) -> dict[str, Any]:
    """Go's json.Decode errors for the fields runc decodes, naming the field."""
    if not isinstance(res, dict):
        raise PyrunError(f"json: cannot unmarshal {_json_kind(res)} into Go value of type specs.LinuxResources")
    for section, (struct, fields) in FIELDS.items():
        value = res.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise PyrunError(f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                             f"LinuxResources.{section} of type specs.{struct}")
        for key, kind in fields.items():
            if value.get(key) is not None and not _fits(value[key], kind):
                raise PyrunError(f"json: cannot unmarshal {_json_kind(value[key])} into Go struct field "
                                 f"{struct}.{section}.{key} of type {kind}")
    _validate_devices((res.get("blockIO") or {}))
    unified = res.get("unified")
    if unified is not None and not (isinstance(unified, dict) and all(isinstance(v, str) for v in unified.values())):
        raise PyrunError("json: cannot unmarshal into Go struct field LinuxResources.unified of type map[string]string")
    return res


def _validate_devices(bio: dict[str, Any]) -> None:
    for key, (struct, fields) in DEVICE_LISTS.items():
        for entry in bio.get(key) or []:
            if not isinstance(entry, dict):
                raise PyrunError(f"json: cannot unmarshal {_json_kind(entry)} into Go struct field "
                                 f"LinuxBlockIO.blockIO.{key} of type specs.{struct}")
            for field, kind in {"major": "int64", "minor": "int64", **fields}.items():
                if entry.get(field) is not None and not _fits(entry[field], kind):
                    raise PyrunError(f"json: cannot unmarshal {_json_kind(entry[field])} into Go struct field "
                                     f"{struct}.blockIO.{key}.{field} of type {kind}")


def _upsert(current: list[dict[str, Any]], given: dict[str, Any], fields: tuple[str, ...]) -> None:
    """The last recorded entry for the device takes the given fields; a new device is appended."""
    major, minor = given.get("major") or 0, given.get("minor") or 0
    values = {f: given[f] for f in fields if given.get(f) is not None}
    if fields == ("rate",):
        values = {"rate": given.get("rate") or 0}      # a throttle entry always carries its rate
    for entry in reversed(current):
        if (entry.get("major") or 0, entry.get("minor") or 0) == (major, minor):
            entry.update(values)
            return
    current.append({"major": major, "minor": minor, **values})


def _fits(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    bounds = {"int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1), "uint16": (0, 2**16 - 1)}[kind]
    return bounds[0] <= value <= bounds[1]


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number " + str(value)
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def merge(current: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """runc's merge: given fields replace recorded ones; unset ones stay."""
    out = copy.deepcopy(current or {})
    for section, keys in MERGED.items():
        given = new.get(section) or {}
        for key in keys:
            value = given.get(key)
            if value is None or (key in ("cpus", "mems") and value == ""):
                continue
            out.setdefault(section, {})[key] = value
    for key, (_struct, fields) in DEVICE_LISTS.items():
        for given in (new.get("blockIO") or {}).get(key) or []:
            _upsert(out.setdefault("blockIO", {}).setdefault(key, []), given,
                    tuple(fields) if key == "weightDevice" else ("rate",))
    cpu = new.get("cpu") or {}
    if cpu.get("idle") is not None and cpu.get("shares") is None:
        out["cpu"]["shares"] = 0     # as runc: the kernel refuses shares (weight) on an idle cgroup
    mem = new.get("memory") or {}
    if mem.get("limit") == -1 and mem.get("swap") is None:
        out.setdefault("memory", {})["swap"] = -1    # unlimited memory: unlimited swap too
    limit = (new.get("pids") or {}).get("limit")
    if limit is not None:                           # 0 is a limit (runtime-spec 1.3, current runc)
        out.setdefault("pids", {})["limit"] = limit
    if new.get("unified"):
        out.setdefault("unified", {}).update(new["unified"])
    return out


def update(root: str, container_id: str, resources: dict[str, Any]) -> None:
    from pyrun.cgroups.manager import CgroupError, load
    validate(resources)
    with ContainerDir.open(root, container_id) as cdir:
        state = cdir.load()
        if status_of(cdir, state) == STOPPED:
            raise PyrunError(errors.NOT_RUNNING)
        linux = state.setdefault("config", {}).setdefault("linux", {})
        merged = merge(linux.get("resources"), resources)
        to_apply = {k: v for k, v in merged.items() if k != "devices"}
        try:
            load(state).update(to_apply)
        except CgroupError as e:
            raise PyrunError(str(e)) from None
        linux["resources"] = merged
        cdir.save(state)
