"""A new user namespace's uid_map and gid_map, written by root or by an ordinary user.

root writes both files itself.  An ordinary user may write one line
mapping its own id (the kernel then wants setgroups denied first, for the
gid map); anything more needs the setuid helpers newuidmap/newgidmap
(Debian's `uidmap`), which grant the ranges /etc/subuid and /etc/subgid
give the user.  `check` refuses a config those helpers would refuse,
before anything is created, so that failure leaves nothing behind.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError, PyrunError, strerror

# kind -> (config key, subordinate id file, helper)
KINDS = {"uid": ("uidMappings", "/etc/subuid", "newuidmap"),
         "gid": ("gidMappings", "/etc/subgid", "newgidmap")}


def _own_id(kind: str) -> int:
    return os.geteuid() if kind == "uid" else os.getegid()


def is_own_single(kind: str, mappings: list[dict[str, Any]]) -> bool:
    """One line mapping only the caller's own id: no helper needed."""
    return len(mappings) == 1 and mappings[0]["size"] == 1 and mappings[0]["hostID"] == _own_id(kind)


def _user_names() -> tuple[str, ...]:
    """/etc/sub[ug]id entries name the user by login or by number."""
    import pwd
    uid = os.geteuid()
    try:
        return (pwd.getpwuid(uid).pw_name, str(uid))
    except KeyError:
        return (str(uid),)


def subordinate_ranges(path: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """[(first host id, count)] the file grants to any of `names`."""
    out = []
    with open(path) as f:
        for line in f:
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[0] in names and fields[1].isdigit() and fields[2].isdigit():
                out.append((int(fields[1]), int(fields[2])))
    return out


def _describe(m: dict[str, Any]) -> str:
    return f"{m['containerID']}:{m['hostID']}:{m['size']}"


def check(linux: dict[str, Any], new_userns: bool, mounts: list[dict[str, Any]] | None = None) -> None:
    """Refuse, as an ordinary user, mappings that cannot be written and
    mount options naming ids they leave unmapped."""
    if os.geteuid() == 0:
        return
    if not new_userns:
        if not any(ns.get("type") == "user" for ns in linux.get("namespaces") or []):
            raise ConfigError("rootless container requires user namespaces")
        return          # joining an existing user namespace: its maps are set
    for kind, (key, subid_file, helper) in KINDS.items():
        mappings = linux.get(key) or []
        if not mappings:
            raise ConfigError(f"rootless containers requires at least one {kind.upper()} mapping")
        if not is_own_single(kind, mappings):
            _check_helper_ranges(kind, mappings, subid_file, helper)
    _check_mount_ids(linux, mounts or [])


def _check_mount_ids(linux: dict[str, Any], mounts: list[dict[str, Any]]) -> None:
    """runc's rootless rule: uid=/gid= mount options must name mapped ids
    (the kernel would refuse them with a bare EINVAL)."""
    for i, m in enumerate(mounts):
        for opt in m.get("options") or []:
            kind, _, value = opt.partition("=")
            if kind not in ("uid", "gid") or not value.isdigit():
                continue
            ident = int(value)
            if not any(r["containerID"] <= ident < r["containerID"] + r["size"]
                       for r in linux.get(KINDS[kind][0]) or []):
                raise ConfigError(f"mounts[{i}] ({m.get('destination', '')}): cannot specify {opt} "
                                  f"for rootless containers: no {kind} mapping covers {kind} {ident}")


def _check_helper_ranges(kind: str, mappings: list[dict[str, Any]], subid_file: str, helper: str) -> None:
    names = _user_names()
    if _find_helper(helper) is None:
        raise ConfigError(f"linux.{KINDS[kind][0]}: more than the caller's own {kind} needs {helper} "
                          "(Debian package uidmap), which is not installed")
    try:
        ranges = subordinate_ranges(subid_file, names)
    except OSError as e:
        raise ConfigError(f"linux.{KINDS[kind][0]}: {helper} needs subordinate ids from "
                          f"{subid_file}: {strerror(e.errno)}") from None
    if not ranges:
        raise ConfigError(f"linux.{KINDS[kind][0]}: {subid_file} grants no subordinate {kind}s "
                          f"to user {names[0]}")
    allowed = [(_own_id(kind), 1)] + ranges
    for m in mappings:
        first, count = m["hostID"], m["size"]
        if not any(start <= first and first + count <= start + n for start, n in allowed):
            owned = ", ".join(f"{s}-{s + n - 1}" for s, n in allowed)
            raise ConfigError(f"linux.{KINDS[kind][0]}: mapping {_describe(m)} asks for host {kind}s "
                              f"{first}-{first + count - 1}, which user {names[0]} does not own "
                              f"(own {kind} and {subid_file}: {owned})")


def _find_helper(name: str) -> str | None:
    for d in (os.environ.get("PATH") or "/usr/bin:/bin").split(":") + ["/usr/bin", "/usr/sbin"]:
        path = os.path.join(d or ".", name)
        if os.access(path, os.X_OK):
            return path
    return None


def write(pid: int, linux: dict[str, Any]) -> None:
    """Called by the parent once stage 1 has unshared its user namespace."""
    for kind in ("gid", "uid"):
        key, _file, helper = KINDS[kind]
        mappings = linux.get(key) or []
        if not mappings:
            continue
        if os.geteuid() != 0 and not is_own_single(kind, mappings):
            _run_helper(helper, pid, mappings)
            continue
        if kind == "gid" and os.geteuid() != 0:
            _write_proc(pid, "setgroups", "deny")      # the kernel's condition for an unprivileged gid_map
        _write_proc(pid, f"{kind}_map",
                    "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings))


def _write_proc(pid: int, name: str, text: str) -> None:
    try:
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise PyrunError(f"failed to write {name}: {strerror(e.errno)}") from None


def _run_helper(helper: str, pid: int, mappings: list[dict[str, Any]]) -> None:
    import subprocess
    path = _find_helper(helper)
    if path is None:
        raise PyrunError(f"{helper} not found: install Debian's uidmap package")
    args = [path, str(pid)]
    for m in mappings:
        args += [str(m["containerID"]), str(m["hostID"]), str(m["size"])]
    res = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, check=False)
    if res.returncode != 0:
        text = " ".join(res.stdout.split()) or f"exit status {res.returncode}"
        raise PyrunError(f"failed to use {helper} on {pid}: {text}")
