"""CVE-2022-29162 class: a non-empty inheritable set lets an unprivileged user in
the container gain capabilities by executing a file that carries inheritable
file capabilities.

At execve the kernel computes P'(permitted) = (P(inheritable) & F(inheritable))
| (F(permitted) & P(bounding)) | P'(ambient). runc before 1.1.2 gave `runc exec`'d
processes the bounding set as their inheritable set, so a uid-1000 process that
executed a binary marked `cap_dac_override+ei` became able to read files only
root may read. The attack here is that one, for real: a copy of busybox with the
file capability set through the `security.capability` xattr, executed by uid
1000, in the init and in `pyrun exec`, against a file mode 0600 owned by root.

Seen failing with the protection removed: with the init's and exec's inheritable
set made equal to the bounding set (switch user in src/pyrun/process/init.py),
both attacks read the secret and CapEff showed 0x2 (CAP_DAC_OVERRIDE).
"""
from __future__ import annotations

import os
import shutil
import struct

import pytest

DAC_OVERRIDE = 1 << 1
# linux/capability.h: VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, then
# (permitted, inheritable) for capabilities 0-31 and 32-63, little endian.
FILE_CAPS = struct.pack("<IIIII", 0x02000000 | 0x1, 0, DAC_OVERRIDE, 0, 0)
# Each check runs inside the capped binary itself (its applets run in-process);
# a child it exec'd from /bin would recompute its capabilities from that file.
# Docker's default capability set (moby oci/caps/defaults.go): CAP_DAC_OVERRIDE
# is in the bounding set, so an inheritable set equal to it would pass it on.
DOCKER_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
SCRIPT = "/cap/busybox cat /proc/self/status | grep CapEff; /cap/busybox cat /secret || echo denied"


@pytest.fixture
def capped_bundle(bundle):
    """The bundle's process runs as uid 1000 with Docker's default capabilities
    and no inheritable set, without no_new_privs;
    /cap/busybox is busybox with cap_dac_override in its inheritable file caps;
    /secret is root's, mode 0600."""
    (bundle.rootfs / "cap").mkdir()
    box = bundle.rootfs / "cap" / "busybox"       # named busybox: its applets go by argv[0]
    shutil.copy(os.path.realpath(bundle.rootfs / "bin" / "busybox"), box)
    try:
        os.setxattr(box, "security.capability", FILE_CAPS)
    except OSError as e:
        pytest.skip(f"the bundle's filesystem keeps no file capabilities: {e}")
    secret = bundle.rootfs / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["capabilities"] = {
        kind: list(DOCKER_CAPS) for kind in ("bounding", "effective", "permitted")}
    # Docker's default: no_new_privs would strip what execve grants anyway.
    bundle.config["process"]["noNewPrivileges"] = False
    return bundle


def caps_and_secret(out: str) -> tuple[int, str]:
    eff, last = out.splitlines()
    return int(eff.split()[1], 16), last


def test_init_gains_nothing_from_inheritable_file_caps(pyrun, capped_bundle):
    capped_bundle.set_args("sh", "-c", SCRIPT)
    out = pyrun("run", "-b", str(capped_bundle.path), pyrun.new_id()).stdout
    assert caps_and_secret(out) == (0, "denied"), out


def test_exec_gains_nothing_from_inheritable_file_caps(pyrun, capped_bundle):
    capped_bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("run", "-d", "-b", str(capped_bundle.path), cid)
    try:
        out = pyrun("exec", cid, "sh", "-c", SCRIPT).stdout
        assert caps_and_secret(out) == (0, "denied"), out
    finally:
        pyrun("delete", "-f", cid)


def test_configured_inheritable_cap_is_what_makes_the_difference(pyrun, capped_bundle):
    """The control that shows the attack works when the set is not empty: the
    config asks for CAP_DAC_OVERRIDE as inheritable, and the same binary then
    gets it and reads the secret."""
    capped_bundle.config["process"]["capabilities"]["inheritable"] = ["CAP_DAC_OVERRIDE"]
    capped_bundle.set_args("sh", "-c", SCRIPT)
    out = pyrun("run", "-b", str(capped_bundle.path), pyrun.new_id()).stdout
    assert caps_and_secret(out) == (DAC_OVERRIDE, "root only"), out
