"""Boot Debian's kernel under qemu with cgroup v1 disabled, on the host's own
root filesystem (read-only 9p plus a tmpfs overlay), run one shell command
there as root and bring back its output, exit status and files.

    python tests/vm/harness.py [--timeout S] [--cwd DIR] -- COMMAND...

The guest sees every host path unchanged (the repo, its .venv, busybox), so a
command that works here works there; writes land in the overlay and vanish.
Files the command writes to $PYRUN_VM_OUT come back in VmResult.files.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

if __package__ in (None, ""):   # run as a script: make `vm` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vm.kernel import Kernel, ensure_kernel  # noqa: E402

QEMU = "qemu-system-x86_64"
STAGE2 = Path(__file__).with_name("guest_init.sh")
CMDLINE = ("console=ttyS0 quiet panic=-1 cgroup_no_v1=all random.trust_cpu=on "
           "tsc=reliable no_timer_check i8042.noaux i8042.nokbd")


@dataclass
class VmResult:
    status: int | None            # the command's exit status; None if it never finished
    output: str                   # its stdout and stderr
    console: str                  # the serial console (kernel messages, stage failures)
    seconds: float
    files: dict[str, bytes] = field(default_factory=dict)

    def describe(self) -> str:
        return (f"VM command exit status {self.status} after {self.seconds:.0f}s\n"
                f"--- output ---\n{self.output}\n--- console ---\n{self.console[-4000:]}")

    def text(self, name: str) -> str:
        """A file the guest wrote to $PYRUN_VM_OUT, decoded; a missing one fails the test."""
        assert name in self.files, f"the guest wrote no {name}\n{self.describe()}"
        return self.files[name].decode(errors="replace")

    def inner_pytest(self, name: str) -> str:
        """The summary line of a pytest run the guest wrote to <name>.out (its
        exit status to <name>.status), which must have exited 0 having passed tests."""
        out = self.text(f"{name}.out")
        status = self.text(f"{name}.status").strip()
        summary = out.strip().splitlines()[-1] if out.strip() else ""
        assert status == "0" and " passed" in summary, f"inner pytest exited {status}:\n{out}"
        return summary


def run_for_module(command: str, cwd: str | os.PathLike[str], timeout: float,
                   before: Callable[[], None] | None = None, **boot: Any) -> VmResult:
    """A VM test module's one boot: skipped inside the VM (no VM in the VM),
    an error unless `command` ran there to exit status 0.  `before`: host-side
    preparation the guest reads; `boot`: run()'s other options (systemd=True)."""
    import pytest
    if os.environ.get("PYRUN_IN_VM"):
        pytest.skip("already inside the VM")
    if before is not None:
        before()
    result = run(command, cwd=cwd, timeout=timeout, **boot)
    assert result.status == 0, result.describe()
    return result


def qemu_args(kernel: Kernel, io_dir: Path, memory: int, cpus: int) -> list[str]:
    accel = os.environ.get("PYRUN_VM_ACCEL", "tcg,thread=multi")
    return [
        QEMU, "-accel", accel, "-cpu", os.environ.get("PYRUN_VM_CPU", "max"), "-m", str(memory), "-smp", str(cpus),
        "-nographic", "-monitor", "none", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-net", "none", "-kernel", str(kernel.vmlinuz), "-initrd", str(kernel.initramfs),
        "-append", CMDLINE,
        "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", f"local,id=pyrunio,path={io_dir},security_model=none",
        "-device", "virtio-9p-pci,fsdev=pyrunio,mount_tag=pyrunio",
    ]


def run(command: str, *, cwd: str | os.PathLike[str] | None = None, timeout: float = 600,
        memory: int = 2048, cpus: int = 2, stream: TextIO | None = None, systemd: bool = False) -> VmResult:
    """Run `command` (a shell command line) as root in a fresh VM; with
    `systemd`, systemd is pid 1 and the command runs as its unit, with the
    system bus up (guest_init.sh).

    qemu is killed at `timeout` seconds; its temporary files go either way.
    With `stream`, the command's output is copied there while it runs.
    """
    if shutil.which(QEMU) is None:
        raise RuntimeError(f"{QEMU} not found: install.sh installs qemu-system-x86")
    kernel = ensure_kernel()
    start = time.monotonic()
    io_dir = Path(tempfile.mkdtemp(prefix="pyrun-vm-", dir="/tmp"))
    qemu = None
    try:
        shutil.copy(STAGE2, io_dir / "guest_init.sh")
        (io_dir / "files").mkdir()
        (io_dir / "command").write_text(command + "\n")
        (io_dir / "env").write_text(
            f"PYRUN_VM_CWD={shlex.quote(str(cwd or os.getcwd()))}\n"
            f"PYRUN_VM_MODULES={shlex.quote(str(kernel.modules))}\n"
            + ("PYRUN_VM_SYSTEMD=1\n" if systemd else ""))
        console = open(io_dir / "console", "w+b")
        with console:
            qemu = subprocess.Popen(qemu_args(kernel, io_dir, memory, cpus), stdin=subprocess.DEVNULL,
                                    stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
            _wait(qemu, io_dir / "output", start + timeout, stream)
            console.seek(0)
            console_text = console.read().decode(errors="replace")
        status_text = (io_dir / "status").read_text().strip() if (io_dir / "status").exists() else ""
        status = int(status_text) if status_text.isdigit() else None   # killed mid-write: none
        output_file = io_dir / "output"
        output = output_file.read_bytes().decode(errors="replace") if output_file.exists() else ""
        files = {p.name: p.read_bytes() for p in (io_dir / "files").iterdir() if p.is_file()}
        return VmResult(status, output, console_text, time.monotonic() - start, files)
    finally:
        if qemu is not None and qemu.poll() is None:
            os.killpg(qemu.pid, signal.SIGKILL)
            qemu.wait()
        shutil.rmtree(io_dir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the forked child: qemu gets SIGKILL if we die without cleaning up."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG


def _wait(qemu: subprocess.Popen[bytes], output: Path, deadline: float, stream: TextIO | None) -> None:
    """Until qemu exits or the deadline passes, copying new output to `stream`."""
    offset = 0
    while True:
        done = qemu.poll() is not None
        if stream is not None and output.exists():
            with open(output, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            stream.write(chunk.decode(errors="replace"))
            stream.flush()
        if done:
            return
        if time.monotonic() > deadline:
            os.killpg(qemu.pid, signal.SIGKILL)
            qemu.wait()
            return
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--cwd", default=os.getcwd(), help="directory the command starts in (default: here)")
    p.add_argument("--memory", type=int, default=2048, help="MiB")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--console", action="store_true", help="print the serial console afterwards")
    p.add_argument("--systemd", action="store_true", help="boot systemd as pid 1 (with the system bus)")
    p.add_argument("command", nargs="+", help="run by sh -c inside the VM")
    args = p.parse_args(argv)
    command = args.command[0] if len(args.command) == 1 else shlex.join(args.command)
    res = run(command, cwd=args.cwd, timeout=args.timeout, memory=args.memory, cpus=args.cpus,
              stream=sys.stdout, systemd=args.systemd)
    if args.console or res.status is None:
        sys.stderr.write(res.console)
    print(f"pyrun-vm: exit status {res.status} after {res.seconds:.1f}s", file=sys.stderr)
    return 124 if res.status is None else res.status


if __name__ == "__main__":
    sys.exit(main())
