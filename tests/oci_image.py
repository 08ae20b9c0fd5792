"""OCI images made locally from a rootfs directory: one gzip layer, a config, a
manifest. Written as an image-layout tar (for `ctr images import`) or served by
a registry (conformance/upstream/critest.py), so no test needs the internet."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    """The blobs of one image by digest, and the digest of its manifest."""
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifest: str = ""

    def add(self, data: bytes) -> dict:
        digest = _digest(data)
        self.blobs[digest] = data
        return {"digest": digest, "size": len(data)}


def layer_from(rootfs: Path, extra: dict[str, bytes | tuple[bytes, int]] | None = None) -> bytes:
    """An uncompressed tar of `rootfs`'s contents, then the `extra` files (path:
    content, or (content, mode); owned by root, mode 0644 unless given), which
    replace any of the same name when unpacked."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as layer:
        for entry in sorted(os.listdir(rootfs)):
            layer.add(os.path.join(rootfs, entry), arcname=entry)
        for name, content in (extra or {}).items():
            data, mode = content if isinstance(content, tuple) else (content, 0o644)
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode = len(data), mode
            layer.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def build_image(layer: bytes, **config: object) -> Image:
    """An image of one layer; `config` overrides the image config (Cmd, Entrypoint, User...)."""
    image = Image()
    conf = {"architecture": "amd64", "os": "linux",
            "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/", **config},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}
    layer_desc = image.add(gzip.compress(layer, compresslevel=1, mtime=0))
    config_desc = image.add(json.dumps(conf).encode())
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_desc}]}
    image.manifest = image.add(json.dumps(manifest).encode())["digest"]
    return image


def write_archive(image: Image, dest: Path, name: str) -> None:
    """An OCI image-layout tar naming the image `name` (ctr images import reads the annotation)."""
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": MANIFEST_TYPE, "digest": image.manifest, "size": len(image.blobs[image.manifest]),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
    }]}
    files = [("blobs/sha256/" + d.split(":")[1], data) for d, data in image.blobs.items()]
    files += [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
              ("index.json", json.dumps(index).encode())]
    with tarfile.open(dest, "w") as layout:
        for fname, data in files:
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            layout.addfile(info, io.BytesIO(data))


def build_oci_archive(rootfs: Path, dest: Path, name: str, **config: object) -> None:
    write_archive(build_image(layer_from(rootfs), **config), dest, name)
