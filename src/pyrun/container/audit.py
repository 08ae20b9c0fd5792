"""`pyrun audit`: how a running container is really confined, read from the kernel.

Nothing comes from config.json: namespaces from /proc/<pid>/ns against
/proc/1/ns, capability sets, no_new_privs and seccomp from each process's
status, mounts from its mountinfo, limits from its cgroup's files, fds from
fdinfo's mnt_id. The container's state directory gives only the init's pid
(and start time), in runc's layout, so a runc container is audited too.

The container is hostile ground: every path inside it is resolved with
openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) beneath /proc/<pid>/root,
nothing is followed, and nothing is opened for reading but /proc and cgroup
files of the host.
"""
from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import PyrunError

HIGH, MEDIUM, LOW, INFO = "high", "medium", "low", "info"
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
              "user": "user", "cgroup": "cgroup", "time": "time"}
# sharing the host's namespace of this type: how bad
SHARED_GRADE = {"pid": HIGH, "network": HIGH, "mount": HIGH, "ipc": MEDIUM, "uts": LOW,
                "cgroup": LOW, "user": INFO, "time": INFO}
# effective capabilities that reach the host when held in its user namespace
DANGEROUS_CAPS = {"CAP_SYS_ADMIN": HIGH, "CAP_SYS_MODULE": HIGH, "CAP_SYS_RAWIO": HIGH,
                  "CAP_DAC_READ_SEARCH": HIGH, "CAP_SYS_PTRACE": HIGH, "CAP_BPF": HIGH,
                  "CAP_SYS_BOOT": HIGH, "CAP_MAC_ADMIN": HIGH, "CAP_MAC_OVERRIDE": HIGH,
                  "CAP_NET_ADMIN": MEDIUM, "CAP_SYS_TIME": MEDIUM, "CAP_PERFMON": MEDIUM,
                  "CAP_SYSLOG": MEDIUM, "CAP_SYS_RESOURCE": MEDIUM, "CAP_LINUX_IMMUTABLE": MEDIUM}
# runc's and Docker's defaults
MASKED = ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
PSEUDO_FS = {"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "devtmpfs", "securityfs",
             "debugfs", "tracefs", "bpf", "fusectl", "configfs", "pstore", "hugetlbfs", "autofs", "binfmt_misc"}
SYSCTLS = ["net/ipv4/ip_forward", "net/ipv4/ip_unprivileged_port_start", "net/ipv4/ping_group_range",
           "kernel/hostname", "kernel/domainname", "kernel/shmmax", "kernel/msgmax"]


class Audit:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.findings: list[dict[str, str]] = []
        self.unchecked: list[str] = []

    def flag(self, severity: str, what: str, detail: str = "") -> None:
        self.findings.append({"severity": severity, "finding": what, "detail": detail})


def audit(root: str, container_id: str) -> dict[str, Any]:
    pid, _state = _init_pid(root, container_id)
    a = Audit(pid)
    out: dict[str, Any] = {"id": container_id, "pid": pid}
    out["namespaces"] = ns = _namespaces(a)
    own_user = ns["user"]["own"]
    out["id_maps"] = {k: [" ".join(line.split()) for line in _read(f"/proc/{pid}/{k}").splitlines()]
                      for k in ("uid_map", "gid_map")}
    procs = _container_pids(a, ns)
    out["processes"] = [_process(a, p, own_user) for p in procs]
    out["rlimits"] = _rlimits(pid)
    out["cgroup"] = _cgroup(a, pid)
    mounts = _mountinfo(pid)
    out["mounts"] = _mounts(a, pid, mounts, own_user)
    out["devices"] = _devices(a, pid, out["cgroup"])
    out["paths"] = _restricted(a, pid, mounts, own_user)
    out["sysctls"] = _sysctls(a, pid, ns)
    out["fds"] = _fds(a, procs, mounts)
    out["unchecked"] = a.unchecked
    order = {HIGH: 0, MEDIUM: 1, LOW: 2, INFO: 3}
    out["findings"] = sorted(a.findings, key=lambda f: order[f["severity"]])
    return out


# --- the container -------------------------------------------------------------

def _init_pid(root: str, container_id: str) -> tuple[int, dict[str, Any]]:
    """The init's pid from <root>/<id>/state.json (pyrun's or runc's), checked
    against its recorded start time so that a recycled pid is no container."""
    from pyrun.state import jsonio
    from pyrun.state.store import validate_id
    validate_id(container_id)
    path = os.path.join(root, container_id, "state.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PyrunError(f"container {container_id} does not exist") from None
    except OSError as e:
        raise PyrunError(f"open {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        state = jsonio.loads(f.read())
    pid = int(state.get("init_process_pid") or 0)
    start = state.get("init_process_start")
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        raise PyrunError(f"container {container_id} is not running") from None
    if start is not None and str(fields[19]) != str(start):
        raise PyrunError(f"container {container_id} is not running")
    if fields[0] == "Z":
        raise PyrunError(f"container {container_id} is not running")
    return pid, state


def _host_ns(name: str) -> str:
    """The host's namespace: pid 1's, or, where pid 1 is out of our reach (a
    sandbox), our own: audit runs on the host."""
    try:
        return os.readlink(f"/proc/1/ns/{name}")
    except PermissionError:
        return os.readlink(f"/proc/self/ns/{name}")


def _namespaces(a: Audit) -> dict[str, Any]:
    out = {}
    for oci, name in NAMESPACES.items():
        try:
            mine, host = os.readlink(f"/proc/{a.pid}/ns/{name}"), _host_ns(name)
        except FileNotFoundError:
            continue     # a kernel without it
        own = mine != host
        out[oci] = {"own": own, "ns": mine}
        if not own and oci != "user":
            a.flag(SHARED_GRADE[oci], f"shares the host {oci} namespace", mine)
    if "user" in out and not out["user"]["own"]:
        a.flag(INFO, "no user namespace: root in the container is root on the host", out["user"]["ns"])
    return out


def _container_pids(a: Audit, ns: dict[str, Any]) -> list[int]:
    """Every process of the container: those in its pid namespace, or, sharing
    the host's, those in the init's cgroup."""
    pids = []
    if ns.get("pid", {}).get("own"):
        want = ns["pid"]["ns"]
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.readlink(f"/proc/{name}/ns/pid") == want:
                        pids.append(int(name))
                except OSError:
                    pass
    else:
        try:
            cgroup = _read(f"/proc/{a.pid}/cgroup").split("\n")[0].split(":", 2)[2]
        except (OSError, IndexError):
            return [a.pid]
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if _read(f"/proc/{name}/cgroup").split("\n")[0].split(":", 2)[2] == cgroup:
                        pids.append(int(name))
                except (OSError, IndexError):
                    pass
    return sorted(set(pids) | {a.pid})


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in _read(f"/proc/{pid}/status").split("\n"):
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _caps(hexmask: str) -> list[str]:
    from pyrun.linux.capabilities import CAPABILITIES
    bits = int(hexmask or "0", 16)
    return [name for name, n in CAPABILITIES.items() if bits >> n & 1]


def _process(a: Audit, pid: int, own_user: bool) -> dict[str, Any]:
    try:
        st = _status(pid)
    except OSError:
        return {"pid": pid, "gone": True}
    caps = {k: _caps(st.get(key, "0")) for k, key in (("inheritable", "CapInh"), ("permitted", "CapPrm"),
                                                      ("effective", "CapEff"), ("bounding", "CapBnd"),
                                                      ("ambient", "CapAmb"))}
    seccomp = {"0": "disabled", "1": "strict", "2": "filter"}.get(st.get("Seccomp", ""), st.get("Seccomp", "?"))
    out = {"pid": pid, "comm": st.get("Name"), "uid": st.get("Uid", "").split(), "gid": st.get("Gid", "").split(),
           "capabilities": caps, "no_new_privs": st.get("NoNewPrivs") == "1",
           "seccomp": {"mode": seccomp, "filters": int(st.get("Seccomp_filters", "0") or 0)},
           "lsm": _lsm(pid)}
    who = f"pid {pid} ({st.get('Name')})"
    for cap in caps["effective"]:
        grade = DANGEROUS_CAPS.get(cap)
        if grade:
            # in a user namespace of its own, a capability reaches only what that namespace owns
            a.flag(grade if not own_user else LOW, f"{cap} in the effective set", who)
    if len(caps["bounding"]) >= 38:
        a.flag(HIGH if not own_user else LOW, "full capability bounding set (privileged)", who)
    if seccomp == "disabled":
        a.flag(MEDIUM, "seccomp unconfined", who)
    if not out["no_new_privs"]:
        a.flag(INFO, "no_new_privs is off: setuid binaries can gain privileges", who)
    if out["lsm"] in (None, "unconfined"):
        a.flag(INFO, "no LSM confinement", who)
    return out


def _lsm(pid: int) -> str | None:
    for path in (f"/proc/{pid}/attr/apparmor/current", f"/proc/{pid}/attr/current"):
        try:
            value = _read(path).strip().rstrip("\x00")
        except OSError:
            continue
        return value or None
    return None


def _rlimits(pid: int) -> dict[str, list[str]]:
    out = {}
    lines = _read(f"/proc/{pid}/limits").split("\n")[1:]
    for line in lines:
        if not line.strip():
            continue
        name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
        out[name] = [soft, hard]
    return out


# --- cgroup --------------------------------------------------------------------

def _cgroup(a: Audit, pid: int) -> dict[str, Any]:
    """Paths from the host's view (/proc/<pid>/cgroup is relative to the reader's
    cgroup namespace) and the limits in force."""
    from pyrun.cgroups.manager import of_process
    paths: dict[str, str] = {}
    for line in _read(f"/proc/{pid}/cgroup").split("\n"):
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    report = of_process(pid).audit()
    limits: dict[str, str] = report["limits"]
    if all(rel in ("/", "") for rel in paths.values()):
        a.flag(MEDIUM, "runs in the host's root cgroup", "")
    mem = limits.get("memory.max") or limits.get("memory.limit_in_bytes")
    if mem is None or mem == "max" or (mem.isdigit() and int(mem) >= 1 << 62):
        a.flag(LOW, "no memory limit", mem or "")
    if limits.get("pids.max", "max") == "max":
        a.flag(LOW, "no pids limit", "fork bombs reach the host's limit")
    return report


# --- mounts --------------------------------------------------------------------

def _mountinfo(pid: int) -> list[dict[str, Any]]:
    out = []
    for line in _read(f"/proc/{pid}/mountinfo").split("\n"):
        if not line:
            continue
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        out.append({"id": int(f[0]), "dev": f[2], "root": _unescape(f[3]), "target": _unescape(f[4]),
                    "options": f[5].split(","), "fstype": r[0] if r else "", "source": r[1] if len(r) > 1 else "",
                    "super": r[2].split(",") if len(r) > 2 else []})
    return out


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _mounts(a: Audit, pid: int, mounts: list[dict[str, Any]], own_user: bool) -> list[dict[str, Any]]:
    """Host paths: mounts of a disk filesystem whose root is not inside the
    rootfs's (the mount at /); writable when neither the mount nor its
    superblock is read-only."""
    rootfs = next((m for m in reversed(mounts) if m["target"] == "/"), None)
    out = []
    for m in mounts:
        writable = "rw" in m["options"] and "ro" not in m["super"]
        if m["fstype"] in ("proc", "sysfs") and writable and m["target"] in ("/proc/sys", "/sys"):
            a.flag(HIGH if not own_user else MEDIUM, f"{m['target']} mounted read-write", m["fstype"])
        if m is rootfs or m["fstype"] in PSEUDO_FS:
            continue
        if rootfs is not None and m["dev"] == rootfs["dev"] and \
                (m["root"] + "/").startswith(rootfs["root"].rstrip("/") + "/"):
            continue      # a part of the rootfs bound elsewhere in it
        kind = _kind(pid, m["target"])
        entry = {"host_path": m["root"], "target": m["target"], "fstype": m["fstype"], "source": m["source"],
                 "writable": writable, "kind": kind}
        out.append(entry)
        if writable:
            a.flag(HIGH if kind == "directory" else MEDIUM, f"host path mounted writable ({kind})",
                   f"{m['source']}:{m['root']} at {m['target']}")
        else:
            a.flag(INFO, f"host path mounted read-only ({kind})", f"{m['source']}:{m['root']} at {m['target']}")
    return out


def _open_inside(pid: int, path: str, flags: int = os.O_PATH) -> int:
    """An O_PATH fd of `path` resolved inside the container's root, never
    leaving it and following no magic link."""
    from pyrun.linux import syscalls as s
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return s.openat2(root, path.lstrip("/") or ".", flags | os.O_NOFOLLOW | os.O_CLOEXEC,
                         s.RESOLVE_IN_ROOT | s.RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(root)


def _lstat_inside(pid: int, path: str) -> os.stat_result | None:
    try:
        fd = _open_inside(pid, path)
    except OSError:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _kind(pid: int, path: str) -> str:
    st = _lstat_inside(pid, path)
    if st is None:
        return "unknown"
    return "directory" if stat.S_ISDIR(st.st_mode) else ("socket" if stat.S_ISSOCK(st.st_mode) else "file")


def _restricted(a: Audit, pid: int, mounts: list[dict[str, Any]], own_user: bool) -> dict[str, Any]:
    """runc's default masked and read-only paths: a mount on each where the
    path exists (a mask is /dev/null or a tmpfs; read-only is a ro bind)."""
    on: dict[str, dict[str, Any]] = {}
    for m in mounts:
        on[m["target"]] = m     # the last mount on a target is the visible one
    if "/proc" not in on or on["/proc"]["fstype"] != "proc":
        a.unchecked.append("masked and read-only paths: no procfs at /proc")
        return {}
    out: dict[str, Any] = {"masked": {}, "readonly": {}}
    for path in MASKED:
        if _lstat_inside(pid, path) is None:
            continue
        m = on.get(path)
        masked = m is not None and (m["fstype"] == "tmpfs" or m["root"] in ("/null", "/dev/null") or
                                    m["source"] == "tmpfs")
        out["masked"][path] = masked
        if not masked:
            a.flag(MEDIUM, "path not masked", path)
    for path in READONLY:
        if _lstat_inside(pid, path) is None:
            continue
        m = on.get(path)
        ro = m is not None and "ro" in m["options"]
        out["readonly"][path] = ro
        if not ro:
            grade = HIGH if path in ("/proc/sysrq-trigger", "/proc/sys") and not own_user else MEDIUM
            a.flag(grade, "path not read-only", path)
    return out


# --- devices -------------------------------------------------------------------

def _devices(a: Audit, pid: int, cgroup: dict[str, Any]) -> list[dict[str, Any]]:
    """Device nodes under the container's /dev and whether its device cgroup
    (v1 devices.list) lets it open them."""
    rules = cgroup["limits"].get("devices.list")
    if rules is None:
        a.unchecked.append("device access: cgroup v2 eBPF programs are not read back; nodes listed only")
    nodes = []
    try:
        dev = _open_inside(pid, "/dev", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        _walk(os.dup(dev), "/dev", nodes, 0)
    finally:
        os.close(dev)
    allowed_rules = [r.split() for r in (rules or "").split("\n") if r.strip()]
    for n in nodes:
        n["allowed"] = None if rules is None else _allowed(allowed_rules, n["type"], n["major"], n["minor"])
        if n["allowed"] and n["type"] == "b":
            a.flag(HIGH, "block device node the container can open", f"{n['path']} {n['major']}:{n['minor']}")
    if rules is not None and any(r[:2] == ["a", "*:*"] for r in allowed_rules):
        a.flag(HIGH, "device cgroup allows every device", "devices.list: a *:* rwm")
    return nodes


def _walk(fd: int, path: str, out: list[dict[str, Any]], depth: int) -> None:
    """Without following anything: scandir of an fd, lstat of entries."""
    try:
        entries = list(os.scandir(fd))
    except OSError:
        os.close(fd)
        return
    try:
        for e in entries[:4096]:
            st = os.stat(e.name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": f"{path}/{e.name}", "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)})
            elif stat.S_ISDIR(st.st_mode) and depth < 3:
                try:
                    sub = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError:
                    continue
                _walk(sub, f"{path}/{e.name}", out, depth + 1)
    finally:
        os.close(fd)


def _allowed(rules: list[list[str]], kind: str, major: int, minor: int) -> bool:
    for r in rules:
        if len(r) < 3 or "r" not in r[2] and "w" not in r[2]:
            continue
        t, (ma, _, mi) = r[0], r[1].partition(":")
        if t in ("a", kind) and ma in ("*", str(major)) and mi in ("*", str(minor)):
            return True
    return False


# --- sysctls and fds -------------------------------------------------------------

def _sysctls(a: Audit, pid: int, ns: dict[str, Any]) -> dict[str, Any]:
    """Values the container sees that differ from the host's: read by a child
    that joins the container's net, ipc and uts namespaces (procfs shows the
    reader's namespaces' values)."""
    joined = [t for t in ("network", "ipc", "uts") if ns.get(t, {}).get("own")]
    if not joined:
        return {}
    host = {k: _try_read("/proc/sys/" + k) for k in SYSCTLS}
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            from pyrun.linux import syscalls as s
            from pyrun.linux.namespaces import NAMESPACES as NS
            for t in joined:
                fd = os.open(f"/proc/{pid}/ns/{NAMESPACES[t]}", os.O_RDONLY | os.O_CLOEXEC)
                s.setns(fd, NS[t][0])
                os.close(fd)
            from pyrun.state.jsonio import dumps
            os.write(w, dumps({k: _try_read("/proc/sys/" + k) for k in SYSCTLS}, compact=True).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(child, 0)
    from pyrun.state.jsonio import loads
    try:
        inside = loads(data)
    except ValueError:
        a.unchecked.append("sysctls: could not join the container's namespaces")
        return {}
    diff = {k.replace("/", "."): {"container": inside[k], "host": host[k]}
            for k in SYSCTLS if inside.get(k) != host[k] and inside.get(k) is not None}
    for key, v in diff.items():
        if key not in ("kernel.hostname", "kernel.domainname"):
            a.flag(INFO, "sysctl differs from the host", f"{key}={v['container']} (host {v['host']})")
    return diff


def _fds(a: Audit, pids: list[int], mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """fds on files of a mount the container's mount namespace does not have:
    a way out of the rootfs (CVE-2024-21626's leaked cwd/fd class)."""
    ids = {m["id"] for m in mounts}
    out = []
    for pid in pids:
        places = []
        try:
            places = [(f"fd/{n}", f"fdinfo/{n}") for n in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for fd, info in places + [("cwd", None), ("root", None)]:
            try:
                target = os.readlink(f"/proc/{pid}/{fd}")
            except OSError:
                continue
            if not target.startswith("/"):
                continue        # pipes, sockets, anon inodes
            mnt = _mnt_id(pid, info) if info else _mnt_id_of_path(f"/proc/{pid}/{fd}")
            if mnt is not None and mnt not in ids:
                out.append({"pid": pid, "fd": fd, "target": target, "mnt_id": mnt})
                # stdio is what the caller handed over (a shim's pipes, a log file): worth knowing;
                # anything else (a directory, a preserved fd, cwd) leads out of the rootfs
                stdio = fd in ("fd/0", "fd/1", "fd/2")
                a.flag(MEDIUM if stdio else HIGH, "fd on a file outside the container's mounts"
                       + (" (stdio)" if stdio else ""), f"pid {pid} {fd} -> {target}")
    return out


def _mnt_id(pid: int, info: str) -> int | None:
    try:
        for line in _read(f"/proc/{pid}/{info}").split("\n"):
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _mnt_id_of_path(path: str) -> int | None:
    """cwd and root: open O_PATH through the magic link, then our own fdinfo."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _mnt_id(os.getpid(), f"fdinfo/{fd}")
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _try_read(path: str) -> str | None:
    try:
        return _read(path).strip()
    except OSError:
        return None


def text(report: dict[str, Any]) -> str:
    out = [f"container {report['id']} (init pid {report['pid']})"]
    out.append("namespaces: " + ", ".join(f"{t} {'own' if v['own'] else 'HOST'}" for t, v in report["namespaces"].items()))
    for p in report["processes"]:
        if p.get("gone"):
            continue
        out.append(f"pid {p['pid']} {p['comm']}: uid {' '.join(p['uid'])}, effective caps "
                   f"{', '.join(p['capabilities']['effective']) or 'none'}; no_new_privs {p['no_new_privs']}; "
                   f"seccomp {p['seccomp']['mode']} ({p['seccomp']['filters']} filters); lsm {p['lsm']}")
    out.append("cgroup: " + ", ".join(f"{k}={v}" for k, v in report["cgroup"]["limits"].items() if k != "devices.list"))
    for m in report["mounts"]:
        out.append(f"host path {m['host_path']} at {m['target']} ({m['kind']}, {'rw' if m['writable'] else 'ro'})")
    out.append("")
    out.append("findings:")
    for f in report["findings"]:
        out.append(f"  [{f['severity']}] {f['finding']}" + (f": {f['detail']}" if f["detail"] else ""))
    for u in report["unchecked"]:
        out.append(f"  [unchecked] {u}")
    return "\n".join(out) + "\n"
