"""Reading a bundle's config.json and refusing what the runtime cannot honour.

Schema validation (our own schema, oci-spec/) catches shape errors; the
semantic checks below catch what a schema cannot express.  Every error is one
line that names the field.
"""
from __future__ import annotations

from pyrun.state import jsonio as json     # json's results through _json, without importing re
import os
import sys
from pyrun.records import dataclass   # not dataclasses: ~4 ms of imports
TYPE_CHECKING = False     # typing costs every command ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError, strerror

CONFIG = "config.json"


@dataclass
class Bundle:
    path: str
    config: dict[str, Any]
    rootfs: str


def load_bundle(bundle: str | None, cache: str | None = None, config_file: str = CONFIG) -> Bundle:
    """`config_file`: another file name than config.json in the bundle (`explain --config`)."""
    path = os.path.abspath(bundle or ".")
    try:
        os.chdir(path)     # like runc: relative paths in the config are bundle-relative
    except OSError as e:
        raise ConfigError(f"chdir {path}: {strerror(e.errno)}") from None
    try:
        with open(config_file, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"JSON specification file {config_file} not found") from None
    except OSError as e:
        raise ConfigError(f"open {config_file}: {strerror(e.errno)}") from None
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{config_file}: invalid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{config_file}: the configuration must be a JSON object")
    check_strings_and_depth(config)
    if not _known_valid(raw, cache):
        validate_schema(config)
        _remember_valid(raw, cache)
    rootfs = check_semantics(config, path)
    return Bundle(path, config, rootfs)


def field_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


# Fields whose own check words an error as runc does (its specconv and config
# validation: what callers and runc's own suite match on).  When the schema
# refuses a config, the check of each such field in it runs first and its
# error, if any, is the one reported instead of the schema's generic message.
# The check must take any JSON value without a traceback (the schema has not
# vouched for its types) and raise ConfigError naming the field.
WORDED_CHECKS: tuple[tuple[str, str, str, str], ...] = (
    # (section, key, module, function)
    ("linux", "memoryPolicy", "pyrun.linux.mempolicy", "check"),
)


def _run_worded_checks(config: dict[str, Any]) -> None:
    for section, key, module, function in WORDED_CHECKS:
        parent = config.get(section)
        if isinstance(parent, dict) and key in parent:
            __import__(module)          # not importlib: see cli/main.py
            getattr(sys.modules[module], function)(parent[key])


def validate_schema(config: dict[str, Any]) -> None:
    from pyrun.spec.fastcheck import is_valid
    if is_valid(config, _SCHEMA_DIR):
        return          # jsonschema only to word an error (or past what fastcheck knows)
    _run_worded_checks(config)
    from jsonschema.exceptions import best_match

    from pyrun.spec.schema_loader import load_validator
    error = best_match(load_validator("config").iter_errors(config))
    if error is not None:
        message = error.message
        if len(message) > 200:
            message = message[:200] + "..."
        raise ConfigError(f"{CONFIG}: {field_path(error.absolute_path)}: {message}")


# --- a cache of configs that passed the schema ------------------------------
# Importing jsonschema and validating costs more than everything else `create`
# does; a config byte-identical to one already validated (by the same schema)
# skips it.  Only the schema check is cached: the semantic checks always run.
_CACHE_LIMIT = 256


# schema_loader.SCHEMA_DIR, without importing pathlib (and urllib) to learn it.
_SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "schema")


def _cache_key(raw: bytes) -> str:
    try:
        from _sha256 import sha256     # CPython's own: hashlib would load OpenSSL (~2 ms)
    except ImportError:
        from hashlib import sha256

    from pyrun import __version__
    h = sha256(raw)
    h.update(__version__.encode())
    for entry in sorted(os.scandir(_SCHEMA_DIR), key=lambda e: e.name):
        st = entry.stat()
        h.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _known_valid(raw: bytes, cache: str | None) -> bool:
    if not cache:
        return False
    try:
        with open(cache) as f:
            return _cache_key(raw) in f.read().split()
    except OSError:
        return False


def _remember_valid(raw: bytes, cache: str | None) -> None:
    """One line per config; appends are atomic, pruning rewrites and renames."""
    if not cache:
        return
    line = _cache_key(raw) + "\n"
    try:
        os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
        try:
            with open(cache) as f:
                keys = f.read().split()
        except FileNotFoundError:
            keys = []
        if len(keys) >= _CACHE_LIMIT:
            tmp = f"{cache}.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write("".join(k + "\n" for k in keys[_CACHE_LIMIT // 4:]) + line)
            os.rename(tmp, cache)
            return
        fd = os.open(cache, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass      # a cache that cannot be written only costs time


_NS_SYSCTLS = (("net.", "network"), ("kernel.msg", "ipc"), ("kernel.sem", "ipc"),
               ("kernel.shm", "ipc"), ("fs.mqueue.", "ipc"),
               ("kernel.hostname", "uts"), ("kernel.domainname", "uts"))


def check_semantics(config: dict[str, Any], bundle: str) -> str:
    """What the schema cannot say; returns the absolute rootfs path."""
    root = config.get("root") or {}
    if not root.get("path"):
        raise ConfigError("root.path: the root filesystem path must be set")
    rootfs = os.path.join(bundle, root["path"])
    if not os.path.isdir(rootfs):
        raise ConfigError(f"root.path: rootfs ({rootfs}) does not exist")
    rootfs = os.path.realpath(rootfs)
    if rootfs == "/":
        raise ConfigError("root.path: the rootfs must not be the host's /")
    process = config.get("process")
    if not process:
        raise ConfigError("process: the process property must be set to create a container")
    if not (process.get("args") or []):
        raise ConfigError("process.args: must not be empty")
    cwd = process.get("cwd")
    if not cwd or not cwd.startswith("/"):
        raise ConfigError("process.cwd: must be an absolute path")
    linux = config.get("linux")
    if linux is None:
        raise ConfigError("linux: the linux section is required on Linux")
    namespaces: dict[str, str | None] = {}
    for i, ns in enumerate(linux.get("namespaces") or []):
        kind = ns.get("type")
        if kind in namespaces:
            raise ConfigError(f"linux.namespaces[{i}]: duplicate namespace type {kind!r}")
        path = ns.get("path") or None      # "" is no path: a new namespace (as runc)
        if path is not None and not os.path.exists(path):
            raise ConfigError(f"linux.namespaces[{i}].path: {path} does not exist")
        namespaces[kind] = path
    if config.get("hostname") and "uts" not in namespaces:
        raise ConfigError("hostname: unable to set hostname without a private UTS namespace")
    if config.get("domainname") and "uts" not in namespaces:
        raise ConfigError("domainname: unable to set domainname without a private UTS namespace")
    for key in ("maskedPaths", "readonlyPaths"):
        if linux.get(key) and "mount" not in namespaces:
            # runc's words: masking binds over paths, which in the host's mount
            # namespace would be the host's own
            raise ConfigError(f"linux.{key}: unable to restrict sys entries without a private MNT namespace")
    if linux.get("timeOffsets") and "time" not in namespaces:
        raise ConfigError("linux.timeOffsets: time offsets require a time namespace")
    if (linux.get("uidMappings") or linux.get("gidMappings")) and "user" not in namespaces:
        raise ConfigError("linux.uidMappings: user namespace mappings require a user namespace")
    if "user" in namespaces and namespaces["user"] is None:
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise ConfigError("linux.uidMappings: a new user namespace needs uidMappings and gidMappings")
    _check_device_numbers(linux.get("devices") or [])
    for key in linux.get("sysctl") or {}:
        needed = next((ns for prefix, ns in _NS_SYSCTLS if key.startswith(prefix)), None)
        if needed is None or needed not in namespaces:
            raise ConfigError(f"linux.sysctl: sysctl {key!r} is not in a separate kernel namespace")
    check_process_names(process)
    if process.get("terminal") is not None and not isinstance(process.get("terminal"), bool):
        raise ConfigError("process.terminal: must be a boolean")
    return rootfs


def check_process_names(process: dict[str, Any]) -> None:
    """rlimit names must map onto a kernel interface (config.md).  Capability
    names need not: one that cannot be mapped is dropped with a warning
    (container/capsets.py), as config.md asks and runc does."""
    import resource

    for i, rl in enumerate(process.get("rlimits") or []):
        if not hasattr(resource, str(rl.get("type"))) or not str(rl.get("type")).startswith("RLIMIT_"):
            raise ConfigError(f"process.rlimits[{i}].type: unknown rlimit type {rl.get('type')!r}")
        if rl.get("soft", 0) > rl.get("hard", 0):
            raise ConfigError(f"process.rlimits[{i}]: soft limit {rl.get('soft')} exceeds hard limit {rl.get('hard')}")


MAX_DEPTH = 64     # the deepest the runtime-spec goes is ~8; deeper is an attack on the validator


def check_strings_and_depth(config: dict[str, Any]) -> None:
    """Every string of the config ends up in a syscall or a file; a NUL byte
    in any of them cannot, and would surface as a traceback deep in the init.
    Walked without recursion: nesting is what we are refusing."""
    stack: list[tuple[Any, tuple]] = [(config, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise ConfigError(f"{field_path(path[:MAX_DEPTH])}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            for key, value in node.items():
                if "\0" in key:
                    raise ConfigError(f"{field_path(path) if path else CONFIG}: key {key!r} contains a NUL byte")
                stack.append((value, path + (key,)))
        elif isinstance(node, list):
            stack.extend((value, path + (i,)) for i, value in enumerate(node))
        elif isinstance(node, str) and "\0" in node:
            raise ConfigError(f"{field_path(path)}: contains a NUL byte")


def _check_device_numbers(devices: list[Any]) -> None:
    """Linux device numbers are 32-bit unsigned major and minor (makedev)."""
    for i, dev in enumerate(devices):
        for key in ("major", "minor"):
            value = dev.get(key) if isinstance(dev, dict) else None
            if value is not None and not (isinstance(value, int) and 0 <= value < 2**32):
                raise ConfigError(f"linux.devices[{i}].{key}: {value} is not a device number (0 to 4294967295)")
