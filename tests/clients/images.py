"""Test images made on the spot, since the tests have no internet to pull any from.

An image is a few gzip'd tar layers (random bytes that do not compress, text that does,
small directories), an OCI config whose diff_ids match the layers, and an OCI manifest,
written as an OCI image layout that skopeo reads as `oci:DIR:TAG`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = 1_700_000_000

WORDS = [
    "shoal",
    "registry",
    "chunk",
    "blob",
    "manifest",
    "layer",
    "digest",
    "index",
    "node",
    "gateway",
    "swarm",
    "peer",
    "tag",
    "content",
    "addressed",
    "storage",
    "replica",
    "placement",
    "recipe",
    "upload",
    "mount",
    "referrer",
]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


@dataclass
class Layer:
    files: dict[str, bytes]
    tar: bytes
    blob: Blob

    @property
    def diff_id(self) -> str:
        return sha256_digest(self.tar)


@dataclass
class Image:
    architecture: str
    layers: list[Layer]
    config: Blob
    manifest: Blob

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> list[Blob]:
        return [self.config, *(layer.blob for layer in self.layers)]

    def files(self) -> dict[str, bytes]:
        """The root filesystem the layers add up to (the layers make no whiteouts)."""
        merged: dict[str, bytes] = {}
        for layer in self.layers:
            merged.update(layer.files)
        return merged


@dataclass
class ImageIndex:
    images: list[Image]
    manifest: Blob

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> list[Blob]:
        return [blob for image in self.images for blob in (image.manifest, *image.blobs())]


@dataclass
class ImageMaker:
    """Makes images whose content is unique to one seed, so tests never share blobs by chance."""

    seed: int
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def random_bytes(self, size: int) -> bytes:
        piece = 16 * 1024 * 1024  # randbytes takes at most 2**31 bits at a time
        return b"".join(
            self.rng.randbytes(min(piece, size - start)) for start in range(0, size, piece)
        )

    def text(self, size: int) -> bytes:
        out = io.StringIO()
        written = 0
        while written < size:
            line = " ".join(self.rng.choice(WORDS) for _ in range(12)) + "\n"
            out.write(line)
            written += len(line)
        return out.getvalue().encode()[:size]

    def layer_files(self, index: int, random_size: int, text_size: int) -> dict[str, bytes]:
        return {
            f"layer{index}/random.bin": self.random_bytes(random_size),
            f"layer{index}/words.txt": self.text(text_size),
            f"layer{index}/etc/seed": f"{self.seed}:{index}\n".encode(),
            f"layer{index}/empty": b"",
        }

    def layer(self, files: dict[str, bytes]) -> Layer:
        tar = make_tar(files)
        compressed = gzip.compress(tar, compresslevel=6, mtime=0)
        return Layer(files, tar, Blob(OCI_LAYER_GZIP, compressed))

    def image(
        self,
        layer_count: int = 3,
        random_size: int = 256 * 1024,
        text_size: int = 512 * 1024,
        architecture: str = "amd64",
        layers: list[Layer] | None = None,
    ) -> Image:
        if layers is None:
            layers = [
                self.layer(self.layer_files(i, random_size, text_size)) for i in range(layer_count)
            ]
        return assemble_image(layers, architecture, label=str(self.seed))

    def index(self, architectures: tuple[str, ...] = ("amd64", "arm64")) -> ImageIndex:
        """A multi-arch index; its images share a base layer, as real ones do."""
        base = self.layer(self.layer_files(0, 128 * 1024, 128 * 1024))
        images = []
        for number, arch in enumerate(architectures, start=1):
            own = self.layer(self.layer_files(number, 96 * 1024, 64 * 1024))
            images.append(self.image(architecture=arch, layers=[base, own]))
        manifests = [
            image.manifest.descriptor(platform={"architecture": image.architecture, "os": "linux"})
            for image in images
        ]
        document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return ImageIndex(images, Blob(OCI_INDEX, canonical_json(document)))


def make_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic tar of `files`, with their parent directories."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = EPOCH
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def assemble_image(layers: list[Layer], architecture: str, label: str) -> Image:
    config_document = {
        "architecture": architecture,
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/layer0/etc/seed"],
            "Labels": {"dev.shoal.test": label},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": "2023-11-14T22:13:20Z", "created_by": f"shoal test layer {i}"}
            for i in range(len(layers))
        ],
    }
    config = Blob(OCI_CONFIG, canonical_json(config_document))
    manifest_document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.blob.descriptor() for layer in layers],
    }
    manifest = Blob(OCI_MANIFEST, canonical_json(manifest_document))
    return Image(architecture, layers, config, manifest)


def write_layout(directory: Path, refs: dict[str, Image | ImageIndex]) -> None:
    """Write an OCI image layout holding `refs` (tag name -> image or index)."""
    blobs_dir = directory / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifests = []
    for tag, item in refs.items():
        all_blobs = [item.manifest, *item.blobs()]
        for blob in all_blobs:
            path = blobs_dir / blob.digest.removeprefix("sha256:")
            if not path.exists():
                path.write_bytes(blob.data)
        manifests.append(item.manifest.descriptor(annotations={REF_NAME: tag}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    (directory / "index.json").write_bytes(canonical_json(index))


def read_layout_ref(directory: Path, tag: str) -> dict[str, object]:
    """The descriptor that an OCI layout's index.json gives for `tag`."""
    index = json.loads((directory / "index.json").read_bytes())
    for descriptor in index["manifests"]:
        if descriptor.get("annotations", {}).get(REF_NAME) == tag:
            return dict(descriptor)
    raise KeyError(f"{tag} not in {directory}/index.json")


def assert_layout_holds(layout: Path, tag: str, item: Image | ImageIndex) -> None:
    """The layout's `tag` is `item`: same manifest digest and every blob byte for byte."""
    descriptor = read_layout_ref(layout, tag)
    assert descriptor["digest"] == item.digest
    assert descriptor["mediaType"] == item.manifest.media_type
    assert read_layout_blob(layout, item.digest) == item.manifest.data
    for blob in item.blobs():
        assert read_layout_blob(layout, blob.digest) == blob.data, blob.digest


def read_layout_blob(directory: Path, digest: str) -> bytes:
    algorithm, _, hexdigest = digest.partition(":")
    data = (directory / "blobs" / algorithm / hexdigest).read_bytes()
    assert sha256_digest(data) == digest, f"{digest} in {directory} is corrupt"
    return data


def extract_tar_files(tar_bytes: bytes) -> dict[str, bytes]:
    """Regular files of an uncompressed tar, by path without a leading ./ or /."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                files[normalize_member_name(member.name)] = handle.read()
    return files


def normalize_member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")
