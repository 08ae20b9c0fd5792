"""A private containerd with its CRI plugin, pyrun and runc as runtime handlers,
driven with crictl (tests/test_cri.py) or critest (conformance/upstream/critest.py).

Everything is under one temporary directory: root, state, sockets, config, each
handler's runtime --root, pod logs, the CNI configuration. Pods get network
namespaces of their own, but no host networking is touched: the only CNI plugin
is a script that gives the pod an `eth0` (a port-less bridge) with an address inside its own
namespace (containerd needs an address on eth0 to call a sandbox ready), so no
bridge, veth, iptables rule or sysctl on the host. The sandbox image is a static
pause-like program compiled here; container images are busybox-static.

The daemon's start and teardown are tests/containerd_daemon.py's. Pod network
namespaces are in a path compiled into containerd 1.6, /run/netns/cni-*:
teardown removes those of this daemon's pods.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from containerd_daemon import PrivateContainerd
from daemon_cleanup import unmount_below
from oci_image import Image, build_image, layer_from

REPO = Path(__file__).resolve().parent.parent
RUNC = "/usr/sbin/runc"
K8S_NS = "k8s.io"
SANDBOX_IMAGE = "localhost/pyrun-pause:1"
BUSYBOX_IMAGE = "localhost/pyrun-busybox:1"

PAUSE_C = r"""
/* pause: the pod sandbox's process. Holds the pod's namespaces, reaps the
 * orphans a pid-shared pod reparents to it, exits 0 on SIGINT/SIGTERM. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
    struct sigaction q = {.sa_handler = quit}, r = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigaction(SIGINT, &q, 0);
    sigaction(SIGTERM, &q, 0);
    sigaction(SIGCHLD, &r, 0);
    for (;;) pause();
}
"""

# A CNI plugin of a few lines: eth0 is a port-less bridge device inside the pod's
# own network namespace, with an address from the container id. Nothing on the
# host. (A bridge, as this kernel has neither the dummy nor the veth driver.)
DUMMY_CNI = r"""#!/bin/sh
# pyrun test CNI plugin: a bridge device as eth0 in the pod's netns; nothing on the host.
set -e
cat >/dev/null
case "$CNI_COMMAND" in
ADD)
    n=$(printf %d 0x$(printf %s "$CNI_CONTAINERID" | cut -c1-3))
    addr="10.88.$((n / 250 % 250)).$((n % 250 + 2))"
    nsenter --net="$CNI_NETNS" ip link add "$CNI_IFNAME" type bridge
    nsenter --net="$CNI_NETNS" ip addr add "$addr/16" dev "$CNI_IFNAME"
    nsenter --net="$CNI_NETNS" ip link set "$CNI_IFNAME" up
    printf '{"cniVersion":"0.4.0","interfaces":[{"name":"%s","sandbox":"%s"}],' "$CNI_IFNAME" "$CNI_NETNS"
    printf '"ips":[{"version":"4","address":"%s/16","interface":0}]}\n' "$addr" ;;
VERSION)
    echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}' ;;
esac
"""


def build_pause(dest: Path) -> None:
    src = dest.with_suffix(".c")
    src.write_text(PAUSE_C)
    subprocess.run(["gcc", "-static", "-Os", "-o", str(dest), str(src)], check=True)
    src.unlink()


def sandbox_image(workdir: Path) -> Image:
    """The pod sandbox image: /pause alone, as its entrypoint."""
    root = workdir / "pause-rootfs"
    root.mkdir()
    build_pause(root / "pause")
    image = build_image(layer_from(root), Entrypoint=["/pause"], Cmd=[])
    shutil.rmtree(root)
    return image


class CriContainerd(PrivateContainerd):
    """containerd 1.6 with the CRI plugin; handlers `pyrun` and `runc`."""

    def __init__(self, workdir: Path, pyrun: str, default_handler: str = "pyrun",
                 mirror: str | None = None, preexec: Callable[[], None] | None = None,
                 systemd_cgroup: bool = False, snapshotter: str = "overlayfs") -> None:
        self.cgroup_parent = f"pyrun-cri-{os.getpid()}"
        super().__init__(workdir, K8S_NS, self.cgroup_parent, preexec)
        self.snapshotter = snapshotter         # "native" where the workdir is on overlayfs (the VM's /tmp)
        self.systemd_cgroup = systemd_cgroup   # both handlers: cgroupsPath "slice:cri-containerd:id"
        self.pyrun = pyrun
        self.default_handler = default_handler
        self.mirror = mirror                # "127.0.0.1:<port>": registry.k8s.io and gcr.io, over http
        self.pod_logs = workdir / "pods"
        self._netns: set[str] = set()        # pod network namespaces seen by remove_all

    def handler_root(self, handler: str) -> Path:
        """The handler's runtime --root (the shim adds the namespace, k8s.io)."""
        return self.workdir / f"{handler}-root"

    def prepare(self) -> None:
        self.pod_logs.mkdir()
        self.write_cni()
        self.write_config()

    def write_config(self) -> None:
        w = self.workdir
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        handlers = ""
        for name, binary in (("pyrun", self.pyrun), ("runc", RUNC)):
            handlers += f"""
[{cri}.containerd.runtimes.{name}]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.{name}.options]
  BinaryName = "{binary}"
  Root = "{self.handler_root(name)}"
  SystemdCgroup = {str(self.systemd_cgroup).lower()}
"""
        mirror = ""
        for host in ("registry.k8s.io", "gcr.io") if self.mirror else ():
            mirror += (f'[{cri}.registry.mirrors."{host}"]\n'
                       f'  endpoint = ["http://{self.mirror}"]\n')
        self.config.write_text(self.config_text(f"""[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  # the sandbox asks for oom_score_adj -998; without CAP_SYS_RESOURCE (this host's
  # bounding set) no runtime may lower it: clamp to the daemon's own instead
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
[{cri}.containerd]
  default_runtime_name = "{self.default_handler}"
  snapshotter = "{self.snapshotter}"
{handlers}
[{cri}.cni]
  bin_dir = "{w}/cni-bin"
  conf_dir = "{w}/cni-conf"
  max_conf_num = 1
{mirror}"""))

    def write_cni(self) -> None:
        bin_dir, conf_dir = self.workdir / "cni-bin", self.workdir / "cni-conf"
        bin_dir.mkdir()
        conf_dir.mkdir()
        os.symlink("/usr/lib/cni/loopback", bin_dir / "loopback")   # go-cni always sets up lo
        plugin = bin_dir / "pyrun-dummy"
        plugin.write_text(DUMMY_CNI)
        plugin.chmod(0o755)
        (conf_dir / "10-pyrun.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "pyrun-pods", "plugins": [{"type": "pyrun-dummy"}]}))

    def start(self, timeout: float = 60) -> "CriContainerd":
        super().start(timeout)
        self.import_image(sandbox_image(self.workdir), SANDBOX_IMAGE)
        return self

    def import_busybox(self, rootfs: Path, name: str = BUSYBOX_IMAGE) -> None:
        self.import_rootfs(rootfs, name)

    # -- teardown --

    def remove_all(self, crictl: str) -> None:
        """Every pod (and so every container) the CRI knows, through the CRI."""
        base = [crictl, "--runtime-endpoint", f"unix://{self.address}", "--timeout", "60s"]
        pods = subprocess.run(base + ["pods", "-q"], capture_output=True, text=True, timeout=90).stdout.split()
        for pod in pods:
            info = subprocess.run(base + ["inspectp", pod], capture_output=True, text=True, timeout=90)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                spec = json.loads(info.stdout)["info"]["runtimeSpec"]
                self._netns |= {ns["path"] for ns in spec["linux"]["namespaces"]
                                if ns["type"] == "network" and ns.get("path", "").startswith(("/run/netns/", "/var/run/netns/"))}
            subprocess.run(base + ["stopp", pod], capture_output=True, timeout=90)
            subprocess.run(base + ["rmp", "-f", pod], capture_output=True, timeout=90)

    def stop(self, crictl: str | None = None) -> None:
        """Through the CRI first, when given `crictl`."""
        def clear() -> None:
            if crictl:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.remove_all(crictl)
        try:
            super().stop(clear)
        finally:
            self._remove_netns()

    def _remove_netns(self) -> None:
        """Pod network namespaces containerd did not remove (a failed test's)."""
        for path in self._netns:
            if not os.path.lexists(path):
                continue
            path = os.path.realpath(path)          # /var/run/netns is /run/netns in mountinfo
            unmount_below(path)
            with contextlib.suppress(OSError):
                os.unlink(path)


def new_workdir() -> Path:
    # short: the socket path must stay below 108 bytes
    return Path(tempfile.mkdtemp(prefix="pyrun-ctrd-cri-"))
