"""The runtime-spec Features structure (features.md, features-linux.md) for
`pyrun features`: what this pyrun recognizes and implements, nothing more.

Each list is read from the table the code that acts on the config uses, so
the document cannot claim a word pyrun would refuse.  Two lists depend on the
host where pyrun itself would refuse otherwise: capabilities the running
kernel does not know, and seccomp architectures this libseccomp cannot add.
Modules are imported only here, when the command runs.
"""
from __future__ import annotations

import errno
from typing import Any

OCI_VERSION_MIN = "1.0.0"

# config.md "POSIX-platform hooks": all of them are run by pyrun.
HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]

# config.json annotations that change what pyrun does: it interprets none.
UNSAFE_CONFIG_ANNOTATIONS: list[str] = []


def build() -> dict[str, Any]:
    from pyrun import SPEC_VERSION, __version__
    from pyrun.cli.version import commit

    annotations = {
        "io.github.pyrun.commit": commit(),
        "io.github.pyrun.version": __version__,
    }
    # runc says org.opencontainers.runc.checkpoint.enabled; ours says whether
    # `checkpoint`/`restore` can work here: CRIU on PATH.
    annotations["io.github.pyrun.checkpoint.enabled"] = "true" if _criu_found() else "false"
    seccomp, libseccomp_version = _seccomp()
    if libseccomp_version:
        annotations["io.github.seccomp.libseccomp.version"] = libseccomp_version
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOKS),
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": namespaces(),
            "capabilities": capabilities(),
            # systemd: the --systemd-cgroup driver (cgroup v2 hosts, tested under
            # systemd in tests/vm); systemdUser (the user's bus) is written but untested
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": True},
            "seccomp": seccomp,
            "apparmor": {"enabled": True},
            "selinux": {"enabled": True},
            "intelRdt": {"enabled": True, "schemata": True, "monitoring": True},
            "memoryPolicy": _memory_policy(),
            "mountExtensions": {"idmap": {"enabled": _idmap_supported()}},
            "netDevices": {"enabled": True},
        },
        "annotations": annotations,
        "potentiallyUnsafeConfigAnnotations": list(UNSAFE_CONFIG_ANNOTATIONS),
    }


def _criu_found() -> bool:
    import os
    return any(os.access(os.path.join(d, "criu"), os.X_OK)
               for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":") if d)


def mount_options() -> list[str]:
    """Every option word the mount code acts on: mount(2) flags, propagation
    and the recursive (r*) attributes, tmpcopyup (as runc), and idmap/ridmap
    where this kernel can idmap a mount.  Other words are filesystem data,
    which features.md says to leave out."""
    from pyrun.rootfs.options import FLAGS, PROPAGATION, RECURSIVE_ATTRS
    idmap = {"idmap", "ridmap"} if _idmap_supported() else set()
    return sorted({*FLAGS, *PROPAGATION, *RECURSIVE_ATTRS, "tmpcopyup", *idmap})


def _idmap_supported() -> bool:
    from pyrun.rootfs.idmapped import supported
    return supported()


def namespaces() -> list[str]:
    from pyrun.linux.namespaces import NAMESPACES
    return sorted(NAMESPACES)


def capabilities() -> list[str]:
    """The capabilities pyrun knows by name that the running kernel knows too
    (pyrun refuses the others at create)."""
    from pyrun.linux.capabilities import CAPABILITIES
    from pyrun.linux.syscalls import last_cap
    top = last_cap()
    return [name for name, num in sorted(CAPABILITIES.items(), key=lambda kv: kv[1]) if num <= top]


def _memory_policy() -> dict[str, list[str]]:
    from pyrun.linux.mempolicy import FLAGS, MODES
    return {"modes": sorted(MODES), "flags": sorted(FLAGS)}


def _seccomp() -> tuple[dict[str, Any], str | None]:
    """linux.seccomp, and libseccomp's version (None when it cannot be read)."""
    from pyrun import seccomp as sc
    try:
        import pyseccomp
    except (ImportError, RuntimeError):       # no libseccomp: pyrun cannot compile a profile
        return {"enabled": False}, None
    flags = sorted(sc.FLAGS)
    supported = [name for name in flags if _kernel_supports(sc, name)]
    return {
        "enabled": True,
        "actions": sorted(sc.ACTIONS),
        "operators": sorted(sc.OPERATORS),
        "archs": _archs(pyseccomp, sc.ARCHES),
        "knownFlags": flags,
        "supportedFlags": supported,
    }, _libseccomp_version(pyseccomp)


def _kernel_supports(sc: Any, name: str) -> bool:
    bit = sc.FLAGS[name]
    if not bit:                                 # TSYNC: accepted, and sets nothing
        return True
    if bit == sc._FLAG_WAIT_KILLABLE_RECV:      # the kernel knows it only next to a listener
        bit |= sc._FLAG_NEW_LISTENER
    return sc._kernel_has(bit)


def _archs(pyseccomp: Any, arches: dict[str, int]) -> list[str]:
    """The architecture names pyrun maps that this libseccomp can add to a filter."""
    try:
        filt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    except OSError:
        return []
    out = []
    for name, token in sorted(arches.items()):
        try:
            filt.add_arch(token)
        except OSError as e:
            if e.errno != errno.EEXIST:       # the native one is already there
                continue
        out.append(name)
    return out


def _libseccomp_version(pyseccomp: Any) -> str | None:
    """seccomp_version(3) of the library pyseccomp loaded."""
    import ctypes
    lib = getattr(pyseccomp, "_libseccomp", None)
    try:
        func = lib["seccomp_version"]     # a fresh function object: pyseccomp's is left alone
    except (TypeError, AttributeError):
        return None

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    func.argtypes = ()
    func.restype = ctypes.POINTER(Version)
    v = func()
    if not v:
        return None
    return f"{v.contents.major}.{v.contents.minor}.{v.contents.micro}"
