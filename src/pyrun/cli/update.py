"""pyrun update [-r FILE|-] [--memory ... runc's individual flags] <container-id>"""
from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from pyrun.cli.parser import Flag, check_args, parse
from pyrun.errors import PyrunError, strerror

FLAGS = [
    Flag(("resources", "r"), "str"),
    Flag(("blkio-weight",), "int"),
    Flag(("cpu-period",), "str"), Flag(("cpu-quota",), "str"), Flag(("cpu-burst",), "str"),
    Flag(("cpu-share",), "str"), Flag(("cpu-rt-period",), "str"), Flag(("cpu-rt-runtime",), "str"),
    Flag(("cpuset-cpus",), "str"), Flag(("cpuset-mems",), "str"), Flag(("cpu-idle",), "str"),
    Flag(("kernel-memory",), "str"), Flag(("kernel-memory-tcp",), "str"),
    Flag(("memory",), "str"), Flag(("memory-reservation",), "str"), Flag(("memory-swap",), "str"),
    Flag(("pids-limit",), "int"),
    Flag(("l3-cache-schema",), "str"), Flag(("mem-bw-schema",), "str"),
]

_UINT = (("cpu-burst", "cpu", "burst"), ("cpu-period", "cpu", "period"),
         ("cpu-rt-period", "cpu", "realtimePeriod"), ("cpu-share", "cpu", "shares"))
_INT = (("cpu-quota", "cpu", "quota"), ("cpu-rt-runtime", "cpu", "realtimeRuntime"))
_MEM = (("memory", "memory", "limit"), ("memory-swap", "memory", "swap"),
        ("memory-reservation", "memory", "reservation"))


def main(glob, argv: list[str]) -> int:
    from pyrun.container.update import update
    opts, args = parse(FLAGS, argv)
    check_args("update", args, exactly=1)
    if opts["resources"]:
        resources = _read_resources(opts["resources"])
    else:
        resources = resources_from_flags(opts)
    for name in ("l3_cache_schema", "mem_bw_schema"):
        if opts[name]:
            _check_rdt(name)
    update(glob.root, args[0], resources)
    return 0


def _read_resources(source: str) -> dict[str, Any]:
    """-r FILE or -r - (containerd's shim and Docker send LinuxResources on stdin)."""
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source) as f:
                text = f.read()
    except OSError as e:
        raise PyrunError(f"open {source}: {strerror(e.errno)}") from None
    try:
        data = json.loads(text)
        return {} if data is None else data     # Go decodes `null` into a struct as nothing
    except ValueError as e:
        raise PyrunError(f"invalid JSON in resources ({'stdin' if source == '-' else source}): {e}") from None


def resources_from_flags(opts: dict[str, Any]) -> dict[str, Any]:
    from pyrun import log
    res: dict[str, Any] = {"memory": {}, "cpu": {}, "blockIO": {}, "pids": {}}
    if opts["blkio_weight"]:
        res["blockIO"]["weight"] = opts["blkio_weight"]
    if opts["cpuset_cpus"]:
        res["cpu"]["cpus"] = opts["cpuset_cpus"]
    if opts["cpuset_mems"]:
        res["cpu"]["mems"] = opts["cpuset_mems"]
    if opts["cpu_idle"]:
        res["cpu"]["idle"] = _parse_int(opts["cpu_idle"], "cpu-idle", signed=True)
    for flag, section, key in _UINT:
        if opts[flag.replace("-", "_")]:
            res[section][key] = _parse_int(opts[flag.replace("-", "_")], flag, signed=False)
    for flag, section, key in _INT:
        if opts[flag.replace("-", "_")]:
            res[section][key] = _parse_int(opts[flag.replace("-", "_")], flag, signed=True)
    for flag, section, key in _MEM:
        raw = opts[flag.replace("-", "_")]
        if raw:
            res[section][key] = -1 if raw == "-1" else _ram_in_bytes(raw, flag)
    for flag in ("kernel-memory", "kernel-memory-tcp"):
        if opts[flag.replace("-", "_")]:
            log.warning(f"Setting --{flag} is ignored and will be removed")
    if opts["pids_limit"] is not None:     # given, even as 0 (runc: context.IsSet)
        res["pids"]["limit"] = opts["pids_limit"]
    return res


def _parse_int(raw: str, flag: str, signed: bool) -> int:
    func = "ParseInt" if signed else "ParseUint"
    if not re.fullmatch(r"[+-]?\d+" if signed else r"\+?\d+", raw):
        raise PyrunError(f'invalid value for {flag}: strconv.{func}: parsing "{raw}": invalid syntax')
    value = int(raw)
    if not (-2**63 <= value < 2**63 if signed else value < 2**64):
        raise PyrunError(f'invalid value for {flag}: strconv.{func}: parsing "{raw}": value out of range')
    return value


_RAM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _ram_in_bytes(raw: str, flag: str) -> int:
    """docker/go-units RAMInBytes: "100m", "1.5g", "512MiB", "1024" (binary units)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?(?:i?[bB])?", raw)
    if not m:
        raise PyrunError(f"invalid value for {flag}: invalid size: '{raw}'")
    return int(float(m.group(1)) * _RAM_UNITS[(m.group(2) or "").lower()])


def _check_rdt(name: str) -> None:
    """runc refuses RDT schemata the host's resctrl does not offer."""
    from pyrun.intelrdt import resctrl_mountpoint
    root = resctrl_mountpoint()
    kind = "L3" if name == "l3_cache_schema" else "MB"
    if root is None or not os.path.isdir(os.path.join(root, "info", kind)):
        raise PyrunError("Intel RDT/CAT: l3 cache schema is not enabled" if kind == "L3"
                         else "Intel RDT/MBA: memory bandwidth schema is not enabled")
    raise PyrunError(f"--{name.replace('_', '-')}: updating Intel RDT schemata is not supported by pyrun")
