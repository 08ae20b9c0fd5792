"""A private containerd 1.6 (Debian's): what tests/test_containerd.py (driven
with `ctr`) and tests/cri_daemon.py (its CRI plugin, driven with crictl) share.

Root, state, the gRPC/ttrpc sockets, config and log live under one temporary
directory. containerd 1.6 compiles in one path that cannot be moved: the v2
shims' sockets in /run/containerd/s. Teardown removes the sockets of our
shims, and those directories if this daemon made them and they are empty;
it kills by pid only processes whose command line names our socket, and
removes only cgroups with our name.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Callable

from daemon_cleanup import cgroup_dirs_named, empty_and_remove_cgroups, kill_by_cmdline, unmount_below
from oci_image import Image, build_image, layer_from, write_archive
from waiting import eventually

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
_FIXED_DIRS = ("/run/containerd/s", "/run/containerd")
# plugins no test uses (nor has the kernel or tools for)
DISABLED_PLUGINS = ("io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing")


class PrivateContainerd:
    """The daemon's life: a subclass writes its config (prepare), says which
    namespace `ctr` works in and which cgroups are its own, and may remove its
    containers through the daemon before it stops."""

    def __init__(self, workdir: Path, namespace: str, cgroup_name: str,
                 preexec: Callable[[], None] | None = None) -> None:
        self.workdir = workdir
        self.namespace = namespace          # ctr's, and the shims' tasks'
        self.cgroup_name = cgroup_name      # teardown empties and removes cgroups so named
        self.preexec = preexec              # e.g. joining a cgroup of the caller's
        self.snapshotter = "overlayfs"      # images are unpacked for it (the CRI's may choose another)
        self.config = workdir / "config.toml"
        self.address = str(workdir / "c.sock")
        self.log_path = workdir / "containerd.log"
        self.proc: subprocess.Popen | None = None
        self._fixed_before = {d for d in _FIXED_DIRS if os.path.lexists(d)}

    def prepare(self) -> None:
        """Write the config (config_text) and whatever else the daemon reads."""
        raise NotImplementedError

    def config_text(self, extra: str, disabled: tuple[str, ...] = ()) -> str:
        """containerd's config.toml: everything under the work directory, the
        plugins in `disabled` and DISABLED_PLUGINS off, then `extra`."""
        w = self.workdir
        plugins = ", ".join(f'"{p}"' for p in disabled + DISABLED_PLUGINS)
        return f"""version = 2
root = "{w}/root"
state = "{w}/state"
plugin_dir = ""
disabled_plugins = [{plugins}]
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/opt"
{extra}"""

    def start(self, timeout: float = 60) -> "PrivateContainerd":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([CONTAINERD, "--config", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=self.preexec)

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}\n{self.log_tail()}")
            return os.path.exists(self.address) and \
                self.ctr("version", check=False, timeout=10).returncode == 0
        try:
            eventually(answers, timeout, "containerd to answer", interval=0.1)
        except AssertionError:
            raise RuntimeError(f"containerd did not answer within {timeout} s\n{self.log_tail()}") from None
        return self

    def import_image(self, image: Image, name: str) -> None:
        archive = self.workdir / "image.tar"
        write_archive(image, archive, name)
        self.ctr("images", "import", "--snapshotter", self.snapshotter, str(archive), timeout=120)
        archive.unlink()

    def import_rootfs(self, rootfs: Path, name: str) -> None:
        """`rootfs` as a one-layer image named `name`."""
        self.import_image(build_image(layer_from(rootfs)), name)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def ctr(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        cmd = [CTR, "--address", self.address, "--namespace", self.namespace, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}\n--- containerd log ---\n{self.log_tail(15)}")
        return proc

    # -- teardown --

    def stop(self, clear: Callable[[], None] | None = None) -> None:
        """`clear` first (removing containers through the daemon), if it still
        runs; then everything it and its shims left, whatever happened."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                if clear is not None:
                    clear()
            finally:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        kill_by_cmdline(self.address.encode())          # shims: their command line names our socket
        empty_and_remove_cgroups(lambda: cgroup_dirs_named(self.cgroup_name))
        unmount_below(str(self.workdir))
        self._remove_shim_sockets()
        shutil.rmtree(self.workdir, ignore_errors=True)
        for d in _FIXED_DIRS:
            if d not in self._fixed_before:
                with contextlib.suppress(OSError):
                    os.rmdir(d)

    def _remove_shim_sockets(self) -> None:
        """containerd 1.6 names a v2 shim's socket sha256("<address>/<ns>/<id>")."""
        tasks = self.workdir / "state" / "io.containerd.runtime.v2.task" / self.namespace
        if tasks.is_dir():
            for task in tasks.iterdir():
                name = hashlib.sha256(f"{self.address}/{self.namespace}/{task.name}".encode()).hexdigest()
                sock = Path("/run/containerd/s") / name
                if sock.is_socket():
                    sock.unlink()
