#!/usr/bin/env python3
"""critest, the CRI validation suite (cri-tools 1.26.1), against containerd 1.6
with pyrun, and with runc, as the default runtime handler.

    critest.py [--runtime PATH]... [--focus REGEX] [--skip REGEX] [--update-expected] [--logs DIR]

Defaults: this checkout's .venv/bin/pyrun and Debian's /usr/sbin/runc, one after
the other. For each, a private containerd (tests/cri_daemon.py: own root, state,
socket, config; pods get a network namespace with an address but no route out)
runs in a fresh cgroup of ours in every hierarchy, with that runtime as
default_runtime_name, and critest runs against it serially. critest pulls its
test images from registry.k8s.io and gcr.io: containerd is told (registry.mirrors)
to fetch both from a read-only registry on 127.0.0.1 that serves busybox-static
images made here under the names and tags critest asks for. Results (ginkgo's
JSON report: one line per spec) are compared with expected-critest.txt; an
unexpected result, or anything left behind, makes the exit status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402
from common import (HERE, REPO, Outcome, WorkerCgroup, compare, default_runtimes, finish, load_expected,  # noqa: E402
                    mounts_under, print_unexpected, runtime_name, top_cgroups, write_expected)

sys.path.insert(0, str(REPO / "tests"))
from cri_daemon import RUNC, CriContainerd  # noqa: E402
from oci_image import MANIFEST_TYPE, Image, build_image, layer_from  # noqa: E402

EXPECTED = HERE / "expected-critest.txt"
HEADER = """\
# critest (cri-tools 1.26.1) against containerd 1.6.20 with each runtime as the default
# handler, per runtime: <runtime> <pass|fail|skip> <spec>  -- <reason>
# Checked by conformance/upstream/critest.py: any other result fails the run.
# Regenerate with --update-expected (reasons kept).
"""
TIMEOUT = 1800
# Specs not run (ginkgo --skip), each with the reason recorded as its result: they
# would send traffic off this machine (a pod address is routed to the default
# gateway, as the test CNI gives pods no link to the host) or change the host.
NOT_RUN = {
    "should support network$": "host: pod addresses are not reachable from the host (the test CNI "
                               "gives pods no link to it); the request would leave the machine",
    "port mapping with only container port": "host: pod addresses are not reachable from the host (the "
                                             "test CNI gives pods no link to it)",
    "port mapping with host port and container port": "host: hostPort needs the portmap CNI plugin's "
                                                      "iptables rules on the host",
    r"runtime should support portforward \[Conformance\]": "host: before forwarding, the spec fetches the page from the "
                                          "pod's address, which is not reachable from the host",
    "public image with digest should be pulled": "image: named by the digest of gcr.io's own image, "
                                                 "which cannot be rebuilt here (the pull would go to gcr.io)",
}


# --- the images critest pulls, and a registry serving them --------------------------

NONEWPRIVS_C = r"""
/* What e2e-test-images/nonewprivs prints: installed setuid root, its effective
 * uid is 0 unless no_new_privs kept the exec from raising it. */
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\n", (int)geteuid()); return 0; }
"""


def static_program(source: str, work: Path) -> bytes:
    src, out = work / "prog.c", work / "prog"
    src.write_text(source)
    subprocess.run(["gcc", "-static", "-Os", "-o", str(out), str(src)], check=True)
    data = out.read_bytes()
    src.unlink()
    out.unlink()
    return data


def critest_images(rootfs: Path) -> dict[str, dict[str, Image]]:
    """repository -> tag -> image, for what critest 1.26 pulls from registry.k8s.io
    and gcr.io (served by this registry as their mirror)."""
    def img(extra: dict[str, bytes | tuple[bytes, int]] | None = None, **config: object) -> Image:
        return build_image(layer_from(rootfs, extra), **config)
    nonewprivs = static_program(NONEWPRIVS_C, rootfs.parent)
    web = {"/www/index.html": b"pyrun critest\n"}
    # Stand-ins for nginx and Apache httpd: busybox httpd, with what specs look for:
    # nginx's pid file and "master process" in /proc/1/cmdline (httpd ignores the
    # extra argument), and Apache's start-up line in the container log.
    serve = "exec httpd -f -h /www -p {port} {extra}"
    nginx = "mkdir -p /var/run && echo $$ > /var/run/nginx.pid && " + serve
    apache = "echo \"Command line: 'httpd -D FOREGROUND'\" && " + serve
    e2e, staging = "e2e-test-images/", "k8s-staging-cri-tools/"
    passwd = (rootfs / "etc" / "passwd").read_bytes() + b"default-user:x:1000:1000::/home:/bin/sh\n"
    group = (rootfs / "etc" / "group").read_bytes() + \
        b"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"
    tags = img({"/test-image-tags": b"one image, three tags\n"})
    images = {
        e2e + "busybox": {"1.29-2": img()},
        e2e + "nginx": {"1.14-2": img(web, Cmd=["sh", "-c", nginx.format(port=80, extra="'master process'")])},
        e2e + "httpd": {"2.4.39-4": img(web, Cmd=["sh", "-c", apache.format(port=80, extra="")])},
        e2e + "nonewprivs": {"1.3": img({"/nnp": (nonewprivs, 0o4755)}, Entrypoint=["/nnp"], Cmd=[])},
        staging + "hostnet-nginx-amd64": {
            "latest": img(web, Cmd=["sh", "-c", nginx.format(port=12003, extra="'master process'")])},
        staging + "test-image-user-uid": {"latest": img(User="1002")},
        staging + "test-image-user-username": {"latest": img(User="www-data")},
        staging + "test-image-user-uid-group": {"latest": img(User="1003:users")},
        staging + "test-image-user-username-group": {"latest": img(User="www-data:users")},
        staging + "test-image-predefined-group": {"latest": img({"/etc/passwd": passwd, "/etc/group": group},
                                                                User="1000")},
        staging + "test-image-latest": {"latest": img({"/test-image-latest": b"\n"})},
        staging + "test-image-tag": {"test": img({"/test-image-tag": b"test\n"}),
                                     "all": img({"/test-image-tag": b"all\n"})},
        staging + "test-image-tags": {"1": tags, "2": tags, "3": tags},
    }
    for n in (1, 2, 3):
        images[staging + f"test-image-{n}"] = {"latest": img({f"/test-image-{n}": b"\n"})}
    return images


class Registry:
    """A read-only registry (distribution API v2, GET/HEAD) on 127.0.0.1."""

    def __init__(self, images: dict[str, dict[str, Image]]) -> None:
        self.images = images
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                found = registry.lookup(self.path)
                if found is None:
                    self.send_response(404)
                    data, ctype = b'{"errors":[{"code":"NOT_FOUND"}]}', "application/json"
                    digest = ""
                else:
                    self.send_response(200)
                    data, ctype, digest = found
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def lookup(self, path: str) -> tuple[bytes, str, str] | None:
        path = path.split("?")[0]
        if path in ("/v2", "/v2/"):
            return b"{}", "application/json", ""
        for kind in ("/manifests/", "/blobs/"):
            if path.startswith("/v2/") and kind in path:
                repo, _, ref = path[4:].rpartition(kind)
                tags = self.images.get(repo, {})
                if kind == "/manifests/":
                    image = tags.get(ref) or next((i for i in tags.values() if i.manifest == ref), None)
                    if image is not None:
                        return image.blobs[image.manifest], MANIFEST_TYPE, image.manifest
                else:
                    for image in tags.values():
                        if ref in image.blobs:
                            return image.blobs[ref], "application/octet-stream", ref
        return None

    def __enter__(self) -> "Registry":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- running critest ------------------------------------------------------------------

def spec_name(report: dict) -> str:
    return " ".join([*(report.get("ContainerHierarchyTexts") or []), report.get("LeafNodeText", "")]).strip()


def parse_report(path: Path, runtime: str) -> list[Outcome]:
    outcomes = []
    for suite in json.loads(path.read_text()):
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                continue
            state = spec.get("State", "")
            message = (spec.get("Failure") or {}).get("Message", "")
            if state == "skipped" and not message:
                reason = next((why for pattern, why in NOT_RUN.items()
                               if re.search(pattern, spec_name(spec))), None)
                if reason is not None:
                    outcomes.append(Outcome(runtime, spec_name(spec), "skip", reason))
                continue                       # else filtered out by --focus/--skip: did not run
            result = {"passed": "pass", "skipped": "skip", "pending": "skip"}.get(state, "fail")
            outcomes.append(Outcome(runtime, spec_name(spec), result, message.strip()[-2000:]))
    return outcomes


def run_one(runtime: str, crit: Path, registry: str, work: Path, focus: list[str], skip: list[str],
            logs: Path | None) -> tuple[list[Outcome], list[str]]:
    name = runtime_name(runtime)
    handler = "pyrun" if name != "runc" else "runc"
    cgroup = WorkerCgroup(f"pyrun-critest-{os.getpid()}-{name}")
    cgroup.create()
    daemon = CriContainerd(Path(tempfile.mkdtemp(prefix="pyrun-ctrd-critest-")),
                           runtime if handler == "pyrun" else str(REPO / ".venv" / "bin" / "pyrun"),
                           default_handler=handler, mirror=registry, preexec=cgroup.join)
    report = work / f"{name}.json"
    leaks: list[str] = []
    try:
        daemon.start()
        endpoint = f"unix://{daemon.address}"
        cmd = [str(crit / "critest"), "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
               "--ginkgo.no-color", f"--ginkgo.json-report={report}",
               "--ginkgo.timeout", f"{TIMEOUT}s"]
        cmd += [f"--ginkgo.focus={f}" for f in focus] + [f"--ginkgo.skip={s}" for s in [*skip, *NOT_RUN]]
        start = time.monotonic()
        with open(work / f"{name}.log", "wb") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT + 120, cwd=work,
                           env={**os.environ, "PATH": f"{crit}:{os.environ.get('PATH', '')}"})
        took = time.monotonic() - start
        outcomes = parse_report(report, name) if report.exists() else \
            [Outcome(name, "(critest report)", "fail", (work / f"{name}.log").read_text()[-3000:])]
        counts = {r: sum(o.result == r for o in outcomes) for r in ("pass", "fail", "skip")}
        print(f"critest {name}: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped "
              f"in {took:.0f} s", flush=True)
        daemon.remove_all(str(crit / "crictl"))
        state = [str(p) for p in (daemon.handler_root(handler) / "k8s.io").glob("*") if not p.name.startswith("@")]
        leaks += [f"runtime state {s}" for s in state]
    finally:
        daemon.stop(str(crit / "crictl"))
        leaks += mounts_under(str(daemon.workdir))
        leaks += cgroup.leftovers()
        cgroup.destroy()
        if logs:
            logs.mkdir(parents=True, exist_ok=True)
            for f in work.glob(f"{name}.*"):
                shutil.copy2(f, logs / f.name)
    return outcomes, leaks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", action="append", help="runtime binary (repeatable); runc is Debian's")
    ap.add_argument("--focus", action="append", default=[], help="ginkgo focus regex (repeatable)")
    ap.add_argument("--skip", action="append", default=[], help="ginkgo skip regex (repeatable)")
    ap.add_argument("--expected", type=Path, default=EXPECTED)
    ap.add_argument("--update-expected", action="store_true", help="rewrite the expected list (keeps reasons)")
    ap.add_argument("--logs", type=Path, help="keep critest's log and JSON report here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("critest.py: run as root", file=sys.stderr)
        return 2
    runtimes = [str(Path(r).absolute()) for r in (args.runtime or default_runtimes())]
    if any(runtime_name(r) == "runc" and r != RUNC for r in runtimes):
        print(f"critest.py: the runc handler is {RUNC}", file=sys.stderr)
        return 2
    crit = build.cri_dir(build.build("cri-tools")) / "bin"
    work = Path(tempfile.mkdtemp(prefix="pyrun-critest-"))
    tops_before = top_cgroups()
    rootfs = work / "busybox"
    build.stage_busybox(rootfs, with_kernel_dirs=True)     # docker-library's layout: hard links
    outcomes: list[Outcome] = []
    leaks: list[str] = []
    with Registry(critest_images(rootfs)) as registry:
        for runtime in runtimes:
            got, left = run_one(runtime, crit, registry.address, work, args.focus, args.skip, args.logs)
            outcomes += got
            leaks += left
    leaks += sorted(f"cgroup {c}" for c in top_cgroups() - tops_before if "pyrun-critest" in c)
    expected = load_expected(args.expected) if args.expected.exists() else {}
    if args.update_expected:
        write_expected(args.expected, outcomes, expected, HEADER)
        expected = load_expected(args.expected)
    ran = {(o.runtime, o.test) for o in outcomes}
    scope = None if not (args.focus or args.skip) else ran
    cmp = compare(outcomes, expected, scope)
    print_unexpected(cmp, outcomes, runtimes, args.expected)
    return finish("critest.py", cmp, leaks, work)


if __name__ == "__main__":
    sys.exit(main())
