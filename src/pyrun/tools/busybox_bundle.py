"""Build an OCI bundle whose rootfs is Debian's static busybox.

    python -m pyrun.tools.busybox_bundle DIR [--hostname H] [--rootfs-only] -- CMD ARGS...
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from typing import Any

from pyrun.spec.template import default_spec

BUSYBOX = "/bin/busybox"


def make_rootfs(rootfs: str) -> None:
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "usr/bin", "usr/sbin"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        link = os.path.join(rootfs, applet)
        if not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("/bin/busybox", link)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")


def make_config(args: list[str], hostname: str = "pyrun") -> dict[str, Any]:
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args
    spec["root"]["readonly"] = False
    spec["hostname"] = hostname
    # The tests' containers keep a cgroup namespace on every host (`pyrun spec`,
    # like runc's, has one only on a pure cgroup v2 host).
    namespaces = spec["linux"]["namespaces"]
    if {"type": "cgroup"} not in namespaces:
        namespaces.append({"type": "cgroup"})
    return spec


def make_bundle(bundle: str, args: list[str], hostname: str = "pyrun") -> dict[str, Any]:
    make_rootfs(os.path.join(bundle, "rootfs"))
    spec = make_config(args, hostname)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("bundle")
    ap.add_argument("--hostname", default="pyrun")
    import sys
    argv = sys.argv[1:]
    command = ["sh"]
    if "--" in argv:
        command = argv[argv.index("--") + 1:] or command
        argv = argv[:argv.index("--")]
    ns = ap.parse_args(argv)
    make_bundle(ns.bundle, command, ns.hostname)


if __name__ == "__main__":
    main()
