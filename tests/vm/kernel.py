"""Debian's kernel for the VM, fetched with apt and unpacked into a cache,
never installed: the host's /boot and /lib/modules stay untouched.

The cache is keyed by package and version (one directory per kernel build),
built under a lock in a temporary directory and renamed into place, so an
interrupted or concurrent build never leaves a half-made kernel behind.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vm import cpio

CACHE = Path(os.environ.get("PYRUN_VM_CACHE", "/var/cache/pyrun-vm"))
META_PACKAGE = "linux-image-amd64"
BUSYBOX = "/bin/busybox"
# What /init needs to reach the host's root: virtio-pci, 9p over virtio, overlay.
# Their dependencies (virtio_ring, netfs, fscache...) are read from the modules.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
STAGE1 = Path(__file__).with_name("initramfs_init.sh")


@dataclass(frozen=True)
class Kernel:
    release: str        # "6.1.0-56-amd64", what `uname -r` says in the guest
    directory: Path     # the cache entry

    @property
    def vmlinuz(self) -> Path:
        return self.directory / "boot" / f"vmlinuz-{self.release}"

    @property
    def initramfs(self) -> Path:
        """Named by what goes in besides the kernel, so editing /init rebuilds it."""
        digest = hashlib.sha256(STAGE1.read_bytes() + " ".join(ROOT_MODULES).encode()
                                + Path(BUSYBOX).read_bytes()).hexdigest()[:12]
        return self.directory / f"initramfs-{digest}.cpio"

    @property
    def modules(self) -> Path:
        return self.directory / "lib" / "modules" / self.release


def _apt(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def _resolve() -> tuple[str, str]:
    """(package, version) linux-image-amd64 points at, from apt's local lists."""
    deps = _apt("apt-cache", "depends", META_PACKAGE)
    pkg = next((line.split()[-1] for line in deps.splitlines()
                if line.strip().startswith("Depends:") and "linux-image-" in line), None)
    policy = _apt("apt-cache", "policy", pkg) if pkg else ""
    version = next((line.split()[-1] for line in policy.splitlines()
                    if line.strip().startswith("Candidate:")), "(none)")
    if pkg is None or version == "(none)":
        raise RuntimeError(f"apt knows no candidate for {META_PACKAGE}")
    return pkg, version


def _fetch() -> Path:
    """The cache entry of the current kernel, downloaded and unpacked if missing;
    missing or stale apt lists (no candidate, a 404) get one `apt-get update`."""
    for attempt in (0, 1):
        try:
            pkg, version = _resolve()
            entry = CACHE / f"{pkg}_{version}"
            if not (entry / "ready").exists():
                _build(pkg, version, entry)
            return entry
        except (RuntimeError, subprocess.CalledProcessError):
            if attempt:
                raise
            _apt("apt-get", "update", "-qq")
    raise AssertionError("unreachable")


def ensure_kernel() -> Kernel:
    """The cached kernel for linux-image-amd64's current version, built if missing,
    with an initramfs for the current /init.

    Without a usable apt (offline), falls back to the newest kernel already cached.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entry = _fetch()
        except (RuntimeError, OSError, subprocess.CalledProcessError):
            cached = sorted(CACHE.glob("linux-image-*/ready"), key=os.path.getmtime)
            if not cached:
                raise
            entry = cached[-1].parent
        kernel = Kernel((entry / "release").read_text().strip(), entry)
        if not (kernel.modules / "modules.alias").exists():   # a cache from before aliases
            _write_modules_dep(kernel.modules)
        if not kernel.initramfs.exists():
            for old in entry.glob("initramfs-*.cpio"):
                old.unlink()
            partial = kernel.initramfs.with_suffix(".part")
            _write_initramfs(partial, kernel.modules)
            os.rename(partial, kernel.initramfs)
    return kernel


def _build(pkg: str, version: str, entry: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=CACHE))
    try:
        # root-owned download dir: tell apt not to drop to _apt for it
        subprocess.run(["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root",
                        f"{pkg}={version}"], cwd=work, check=True, capture_output=True)
        deb = next(work.glob("*.deb"))
        tree = work / "tree"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        deb.unlink()
        release = pkg.removeprefix("linux-image-")
        (tree / "release").write_text(release + "\n")
        _write_modules_dep(tree / "lib" / "modules" / release)   # for modprobe in the guest
        (tree / "ready").write_text(f"{pkg} {version}\n")
        shutil.rmtree(entry, ignore_errors=True)
        os.rename(tree, entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def module_files(modules: Path) -> dict[str, Path]:
    """Module name (as the kernel spells it, '-' as '_') -> its file."""
    out = {}
    for path in glob.glob(str(modules / "kernel" / "**" / "*.ko*"), recursive=True):
        name = os.path.basename(path).split(".ko")[0].replace("-", "_")
        out[name] = Path(path)
    return out


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.name.endswith(".xz") else data


def modinfo(image: bytes, key: str) -> list[str]:
    """Every value of `key` in a module's .modinfo (null-separated key=value strings)."""
    tag = b"\0" + key.encode() + b"="
    values, start = [], image.find(tag)
    while start >= 0:
        end = image.index(b"\0", start + len(tag))
        values.append(image[start + len(tag):end].decode(errors="replace"))
        start = image.find(tag, end)
    return values


def module_depends(image: bytes) -> list[str]:
    return [d.replace("-", "_") for v in modinfo(image, "depends")[:1] for d in v.split(",") if d]


def load_order(wanted: tuple[str, ...], files: dict[str, Path]) -> list[str]:
    """Modules to insmod, dependencies first; built-in ones (not in `files`) skipped."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in files:
            return
        for dep in module_depends(_read_module(files[name])):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def _write_modules_dep(modules: Path) -> None:
    """modules.dep and modules.alias as depmod writes them (dependencies in reverse
    load order), with `depmod -b` when kmod is installed, else from each module's
    `depends=` and `alias=`."""
    if shutil.which("depmod"):
        subprocess.run(["depmod", "-b", str(modules.parents[2]), modules.name], check=True)
        return
    files = module_files(modules)
    images = {name: _read_module(path) for name, path in files.items()}
    direct = {name: module_depends(image) for name, image in images.items()}
    with open(modules / "modules.alias", "w") as f:   # the kernel's request_module() names
        for name, image in sorted(images.items()):
            f.writelines(f"alias {alias} {name}\n" for alias in modinfo(image, "alias"))

    def closure(name: str, seen: list[str]) -> list[str]:
        for dep in direct.get(name, []):
            if dep in files and dep not in seen:
                closure(dep, seen)
                seen.append(dep)
        return seen

    with open(modules / "modules.dep", "w") as f:
        for name, path in sorted(files.items()):
            deps = [str(files[d].relative_to(modules)) for d in reversed(closure(name, []))]
            f.write(f"{path.relative_to(modules)}: {' '.join(deps)}\n".replace(": \n", ":\n"))


def _write_initramfs(target: Path, modules: Path) -> None:
    files = module_files(modules)
    order = load_order(ROOT_MODULES, files)
    with open(target, "wb") as f:
        archive = cpio.Writer(f)
        for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules", "newroot", "lower", "rw"):
            archive.directory(d)
        archive.char_device("dev/console", 5, 1, 0o600)
        archive.char_device("dev/null", 1, 3, 0o666)
        archive.file("bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
        archive.symlink("bin/sh", "busybox")
        archive.file("init", STAGE1.read_bytes(), 0o755)
        for name in order:
            archive.file(f"lib/modules/{name}.ko", _read_module(files[name]), 0o644)
        archive.file("modules", ("\n".join(order) + "\n").encode(), 0o644)
        archive.close()
