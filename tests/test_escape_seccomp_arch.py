"""Seccomp architecture bypass: a syscall the filter denies, made through another
entry point of the same kernel.

An x86_64 kernel with IA32 emulation also takes i386 system calls (`int $0x80`,
where chmod is number 15, not 90) and, where x32 is enabled, x86_64 numbers with
bit 30 set. A filter that compares syscall numbers without first checking the
audit architecture lets such a call through under a number the rules never name.
libseccomp checks the architecture first and applies the "bad architecture"
action (kill) to any architecture the profile does not list; a listed one gets
the rules translated to its own numbers. These tests make the calls for real
with three tiny static programs (no libc: the syscall instruction alone) and
check the mode of the file they try to change.

Seen failing with the protection removed: with pyrun's compiled filter loaded
with libseccomp's bad-architecture action set to ALLOW
(`filt.set_attr(Attr.ACT_BADARCH, ALLOW)` in src/pyrun/seccomp/__init__.py),
the i386 chmod under the x86_64-only profile changed the mode to 777 and
test_unlisted_architecture_is_killed failed.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(GCC is None, reason="gcc builds the attack programs")

# chmod("/tmp/target", 0777) through one entry point, then exit(errno or 0).
SOURCE = r"""
static const char path[] = "/tmp/target";
__attribute__((noreturn)) void _start(void) {
    long ret;
#if ENTRY == 32
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(15L), "b"(path), "c"(0777L) : "memory");
#elif ENTRY == 320
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(90L | 0x40000000L), "D"(path), "S"(0777L)
                      : "rcx", "r11", "memory");
#else
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(90L), "D"(path), "S"(0777L) : "rcx", "r11", "memory");
#endif
    long status = ret < 0 ? -ret : 0;
    __asm__ volatile ("syscall" : : "a"(60L), "D"(status) : "rcx", "r11", "memory");
    __builtin_unreachable();
}
"""
ENTRIES = {"x86_64": 64, "i386": 32, "x32": 320}
EPERM, ENOSYS = 1, 38
KILLED_BY_SIGSYS = 128 + signal.SIGSYS     # what the shell reports


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("arch")
    (out / "chmod.c").write_text(SOURCE)
    built = {}
    for name, entry in ENTRIES.items():
        built[name] = out / f"chmod-{name}"
        subprocess.run([GCC, "-O1", "-static", "-nostdlib", "-no-pie", "-fno-pic", f"-DENTRY={entry}",
                        "-o", str(built[name]), str(out / "chmod.c")], check=True)
    return built


def attempt(pyrun, bundle, programs: dict[str, Path], seccomp: dict | None) -> dict[str, tuple[int, str]]:
    """Each entry point's chmod inside one container: {entry: (exit status, mode after)}."""
    for name, path in programs.items():
        shutil.copy(path, bundle.rootfs / "bin" / path.name)
    # umask, not chmod, makes the 600 file: the profiles deny chmod to the shell too.
    script = "; ".join(f"rm -f /tmp/target; (umask 077; touch /tmp/target); /bin/chmod-{name}; "
                       f"echo {name} $? $(stat -c %a /tmp/target)" for name in programs)
    if seccomp is None:
        bundle.config["linux"].pop("seccomp", None)
    else:
        bundle.config["linux"]["seccomp"] = seccomp
    bundle.set_args("sh", "-c", script)
    res = pyrun("run", "--bundle", str(bundle.path), pyrun.new_id(), check=False)
    assert res.returncode == 0, res
    rows = [line.split() for line in res.stdout.splitlines()]
    return {name: (int(rc), mode) for name, rc, mode in rows}


def deny_chmod(*arches: str) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": list(arches),
            "syscalls": [{"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.fixture(scope="module")
def x32_on_host(programs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> bool:
    """Whether this kernel takes x32 calls at all (off unless booted with
    syscall.x32=y): the x32 program run on the host, outside any container."""
    root = tmp_path_factory.mktemp("x32root")
    (root / "tmp").mkdir()
    (root / "tmp" / "target").touch(mode=0o600)
    shutil.copy(programs["x32"], root / "chmod-x32")
    rc = subprocess.run(["chroot", str(root), "/chmod-x32"]).returncode
    assert rc in (0, ENOSYS), rc
    return rc == 0


def test_every_entry_point_reaches_the_kernel_without_a_filter(pyrun, bundle, programs, x32_on_host) -> None:
    """The baseline that makes the other tests meaningful: without seccomp, the
    x86_64 and i386 entries really change the mode in a container; x32 does
    exactly what it does on the host."""
    got = attempt(pyrun, bundle, programs, None)
    assert got["x86_64"] == (0, "777"), got
    assert got["i386"] == (0, "777"), got
    assert got["x32"] == ((0, "777") if x32_on_host else (ENOSYS, "600")), got


def test_unlisted_architecture_is_killed(pyrun, bundle, programs) -> None:
    """A profile listing only x86_64 (the native one): the i386 chmod is not an
    x86_64 syscall number 15 let through, it is a bad architecture, and the
    process dies of SIGSYS; the x32 number dies the same way."""
    got = attempt(pyrun, bundle, programs, deny_chmod("SCMP_ARCH_X86_64"))
    assert got == {"x86_64": (EPERM, "600"), "i386": (KILLED_BY_SIGSYS, "600"),
                   "x32": (KILLED_BY_SIGSYS, "600")}, got


def test_listed_architectures_get_the_rules_in_their_own_numbers(pyrun, bundle, programs) -> None:
    """Docker's profiles list x86_64, x86 and x32: chmod is denied through every
    entry with the rule's errno, under each architecture's own number."""
    got = attempt(pyrun, bundle, programs, deny_chmod("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"))
    assert got["x86_64"] == (EPERM, "600"), got
    assert got["i386"] == (EPERM, "600"), got
    assert got["x32"] == (EPERM, "600"), got
