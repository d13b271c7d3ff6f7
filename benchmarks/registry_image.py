"""A synthetic test image written as an OCI image layout, for the registry benchmarks.

Each layer is a gzip-compressed tar of random (incompressible) files plus one small text
file, so compression neither helps nor hurts either registry. The layout is written without
any container tooling: oci-layout, index.json and blobs/sha256/<hex>.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tarfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
FILES_PER_LAYER = 4
PIECE = 1 << 20
MTIME = 1_700_000_000


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar


@dataclass(frozen=True)
class TestImage:
    """An OCI layout on disk holding one image under `tag`."""

    layout: Path
    tag: str
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Layer, ...]

    @property
    def total_bytes(self) -> int:
        """What a client moves for this image: manifest, config and every layer."""
        return self.manifest.size + self.config.size + sum(
            layer.descriptor.size for layer in self.layers)

    @property
    def layer_digests(self) -> list[str]:
        return [layer.descriptor.digest for layer in self.layers]

    @property
    def largest_layer(self) -> Descriptor:
        return max((layer.descriptor for layer in self.layers), key=lambda d: d.size)

    def blob_path(self, digest: str) -> Path:
        return blob_path(self.layout, digest)


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hex_digest = digest.partition(":")
    return layout / "blobs" / algorithm / hex_digest


class _GzipTarWriter:
    """Takes the bytes of a tar; writes them gzip-compressed, hashing both forms."""

    def __init__(self, out: BinaryIO, level: int) -> None:
        self.out = out
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing
        self.tar_hash = hashlib.sha256()
        self.gz_hash = hashlib.sha256()
        self.gz_size = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self.gz_hash.update(data)
            self.gz_size += len(data)
            self.out.write(data)

    def write(self, data: bytes) -> None:
        self.tar_hash.update(data)
        self._emit(self.compressor.compress(data))

    def finish(self) -> None:
        self._emit(self.compressor.flush())


def _tar_header(name: str, size: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = MTIME
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT)


def write_layer(blobs: Path, index: int, size: int, level: int) -> Layer:
    """Write layer `index` of about `size` bytes of tar into `blobs`; name it by digest."""
    temp = blobs / f".layer-{index}.tmp"
    text = "".join(f"layer {index} line {i}: shoal registry benchmark\n" for i in range(2000))
    text_bytes = text.encode()
    random_size = max(size - len(text_bytes), FILES_PER_LAYER)
    rng = random.Random(os.urandom(16))  # not for secrets; several times faster than urandom
    with temp.open("wb") as out:
        writer = _GzipTarWriter(out, level)
        top = f"bench/layer{index}/"
        writer.write(_tar_header("bench/", 0, directory=True))
        writer.write(_tar_header(top, 0, directory=True))
        writer.write(_tar_header(top + "notes.txt", len(text_bytes)))
        writer.write(text_bytes + bytes(-len(text_bytes) % 512))
        for n in range(FILES_PER_LAYER):
            file_size = random_size // FILES_PER_LAYER
            writer.write(_tar_header(f"{top}random-{n}.bin", file_size))
            for offset in range(0, file_size, PIECE):
                writer.write(rng.randbytes(min(PIECE, file_size - offset)))
            writer.write(bytes(-file_size % 512))
        writer.write(bytes(1024))  # two zero blocks end the archive
        writer.finish()
    digest = "sha256:" + writer.gz_hash.hexdigest()
    temp.rename(blob_path(blobs.parent.parent, digest))
    return Layer(Descriptor(LAYER_MEDIA_TYPE, digest, writer.gz_size),
                 "sha256:" + writer.tar_hash.hexdigest())


def _write_blob(layout: Path, data: bytes, media_type: str) -> Descriptor:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob_path(layout, digest).write_bytes(data)
    return Descriptor(media_type, digest, len(data))


def build_image(layout: Path, total_bytes: int, layers: int = 8, tag: str = "bench",
                level: int = 1, workers: int | None = None) -> TestImage:
    """Write an OCI layout of about `total_bytes` in `layers` gzip layers under `layout`."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    per_layer = total_bytes // layers
    with ProcessPoolExecutor(max_workers=workers or min(layers, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(write_layer, blobs, i, per_layer, level) for i in range(layers)]
        built = tuple(future.result() for future in futures)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(MTIME))
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
        "history": [{"created": created, "created_by": f"shoal benchmark layer {i}"}
                    for i in range(layers)],
    }
    config_desc = _write_blob(layout, json.dumps(config).encode(), CONFIG_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_desc.to_json(),
        "layers": [layer.descriptor.to_json() for layer in built],
    }
    manifest_desc = _write_blob(layout, json.dumps(manifest).encode(), MANIFEST_MEDIA_TYPE)
    index = {
        "schemaVersion": 2,
        "manifests": [{**manifest_desc.to_json(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return TestImage(layout, tag, manifest_desc, config_desc, built)


def layout_layer_digests(layout: Path, tag: str) -> list[str]:
    """The layer digests of the image tagged `tag` in an OCI layout, e.g. one skopeo wrote."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            manifest = json.loads(blob_path(layout, entry["digest"]).read_bytes())
            return [layer["digest"] for layer in manifest["layers"]]
    raise LookupError(f"no image tagged {tag!r} in {layout}")


def file_digest(path: Path) -> str:
    digester = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(4 * PIECE):
            digester.update(piece)
    return "sha256:" + digester.hexdigest()
