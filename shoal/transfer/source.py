"""Images on disk, to push: an OCI image layout folder (`index.json`, `blobs/`), the
same packed in a tar (an OCI archive), or `docker save` output (a docker archive).

Nothing is read into memory but manifests and configs: a blob is a byte range of a file
(its own file in a layout, a member's data in a tar), streamed when it is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
INDEX_TYPES = {OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"}
REF_NAME = "org.opencontainers.image.ref.name"
SOURCE = "dev.shoal.source"   # where `shoal pull` got an image: lets a push mount from it
PIECE = 1 << 20


class SourceError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class BlobFile:
    """A blob's bytes: `size` bytes of `path` from `offset`."""

    digest: str
    size: int
    path: Path
    offset: int = 0

    async def read(self) -> AsyncIterator[bytes]:
        """The bytes in ~1 MiB pieces, read off the event loop."""
        with await asyncio.to_thread(self.path.open, "rb") as handle:
            await asyncio.to_thread(handle.seek, self.offset)
            left = self.size
            while left > 0:
                piece = await asyncio.to_thread(handle.read, min(PIECE, left))
                if not piece:
                    raise SourceError(f"{self.path} ends before blob {self.digest} does")
                left -= len(piece)
                yield piece


@dataclass
class Manifest:
    """A manifest to put, the blobs it needs, and the manifests it lists (an index)."""

    digest: str
    media_type: str
    data: bytes
    blobs: list[BlobFile] = field(default_factory=list)
    children: list[Manifest] = field(default_factory=list)

    def all_blobs(self) -> list[BlobFile]:
        """Every blob of this manifest and its children, each once."""
        seen: dict[str, BlobFile] = {}
        for child in self.children:
            for blob in child.all_blobs():
                seen.setdefault(blob.digest, blob)
        for blob in self.blobs:
            seen.setdefault(blob.digest, blob)
        return list(seen.values())


@dataclass
class LocalImage:
    manifest: Manifest
    source: str | None            # the repository it was pulled from, when known


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Files:
    """Files by their path inside a layout, whether a folder or a tar."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.members: dict[str, tarfile.TarInfo] | None = None
        if root.is_file():
            try:
                with tarfile.open(root, "r:") as tar:
                    self.members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            except tarfile.ReadError as exc:
                raise SourceError(f"{root} is neither an image layout folder nor an "
                                  f"uncompressed tar ({exc})") from None

    def _member(self, name: str) -> tarfile.TarInfo | None:
        assert self.members is not None
        member = self.members.get(name)
        for _ in range(8):   # docker save links a repeated layer to its first copy
            if member is None or not (member.issym() or member.islnk()):
                break
            target = member.linkname if member.islnk() else \
                str(Path(name).parent / member.linkname)
            name = str(Path(target)).removeprefix("./")
            member = self.members.get(name)
        return member if member is not None and member.isfile() else None

    def exists(self, name: str) -> bool:
        if self.members is None:
            return (self.root / name).is_file()
        return self._member(name) is not None

    def blob(self, name: str, digest: str) -> BlobFile:
        if self.members is None:
            path = self.root / name
            try:
                return BlobFile(digest, path.stat().st_size, path)
            except OSError:
                raise SourceError(f"{path} is missing (blob {digest})") from None
        member = self._member(name)
        if member is None:
            raise SourceError(f"{self.root} has no {name} (blob {digest})")
        return BlobFile(digest, member.size, self.root, member.offset_data)

    def read(self, name: str, limit: int = 16 << 20) -> bytes:
        blob = self.blob(name, name)
        if blob.size > limit:
            raise SourceError(f"{name} in {self.root} is too large to be a manifest")
        with blob.path.open("rb") as handle:
            handle.seek(blob.offset)
            return handle.read(blob.size)


def _blob_path(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise SourceError(f"unsupported digest {digest!r}")
    return f"blobs/{algorithm}/{hexdigest}"


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise SourceError(f"{what} is not JSON: {exc}") from None


def _oci_manifest(files: _Files, descriptor: dict[str, Any]) -> Manifest:
    digest = str(descriptor["digest"])
    data = files.read(_blob_path(digest))
    if sha256(data) != digest:
        raise SourceError(f"manifest {digest} in {files.root} does not match its digest")
    document = _json(data, f"manifest {digest}")
    media_type = str(descriptor.get("mediaType") or document.get("mediaType") or "")
    manifest = Manifest(digest, media_type, data)
    if media_type in INDEX_TYPES or "manifests" in document:
        manifest.children = [_oci_manifest(files, d) for d in document.get("manifests", [])]
        return manifest
    for d in [document.get("config"), *document.get("layers", [])]:
        if d is None:
            continue
        blob = files.blob(_blob_path(str(d["digest"])), str(d["digest"]))
        if blob.size != int(d.get("size", blob.size)):
            raise SourceError(f"blob {blob.digest} in {files.root} is {blob.size} bytes, "
                              f"the manifest says {d['size']}")
        manifest.blobs.append(blob)
    return manifest


def _pick(descriptors: list[dict[str, Any]], tag: str | None, root: Path) -> dict[str, Any]:
    if tag is not None:
        for d in descriptors:
            if d.get("annotations", {}).get(REF_NAME) == tag or d.get("digest") == tag:
                return d
        names = [d.get("annotations", {}).get(REF_NAME, d.get("digest")) for d in descriptors]
        raise SourceError(f"{root} has no image {tag!r}; it has {', '.join(map(str, names))}")
    if len(descriptors) != 1:
        names = [d.get("annotations", {}).get(REF_NAME, d.get("digest")) for d in descriptors]
        raise SourceError(f"{root} holds {len(descriptors)} images: name one with "
                          f"{root}:NAME ({', '.join(map(str, names))})")
    return descriptors[0]


def _docker_archive(files: _Files, tag: str | None) -> Manifest:
    """A schema 2 manifest for `docker save` output; layer digests are hashed here."""
    entries = _json(files.read("manifest.json"), f"{files.root}: manifest.json")
    if tag is not None:
        entries = [e for e in entries
                   if any(t == tag or t.endswith(f":{tag}") for t in e.get("RepoTags") or [])]
    if len(entries) != 1:
        raise SourceError(f"{files.root} holds {len(entries)} images matching "
                          f"{tag or 'any name'}: name exactly one with {files.root}:TAG")
    entry = entries[0]
    config_data = files.read(entry["Config"])
    config = BlobFile(sha256(config_data), len(config_data),
                      *_location(files, entry["Config"]))
    layers = []
    for name in entry["Layers"]:
        path, offset = _location(files, name)
        size = files.blob(name, name).size
        layers.append(BlobFile(_hash_file(path, offset, size), size, path, offset))
    document = {
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.size, "digest": config.digest},
        "layers": [{"mediaType": DOCKER_LAYER, "size": b.size, "digest": b.digest}
                   for b in layers],
    }
    data = json.dumps(document, indent=3).encode()
    return Manifest(sha256(data), DOCKER_MANIFEST, data, [config, *layers])


def _location(files: _Files, name: str) -> tuple[Path, int]:
    blob = files.blob(name, name)
    return blob.path, blob.offset


def _hash_file(path: Path, offset: int, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(offset)
        left = size
        while left > 0:
            piece = handle.read(min(PIECE * 4, left))
            if not piece:
                raise SourceError(f"{path} is truncated")
            digest.update(piece)
            left -= len(piece)
    return "sha256:" + digest.hexdigest()


def split_name(text: str) -> tuple[Path, str | None]:
    """`DIR` or `DIR:NAME` (skopeo's `oci:DIR:NAME` too) into the path and the name."""
    text = text.removeprefix("oci:").removeprefix("oci-archive:").removeprefix(
        "docker-archive:")
    path = Path(text)
    if path.exists():
        return path, None
    head, colon, name = text.rpartition(":")
    if colon and head and Path(head).exists():
        return Path(head), name
    return path, None


def open_image(text: str) -> LocalImage:
    """The image at `text` (a layout folder, OCI archive or docker archive, with an
    optional `:NAME`). Blocking: call it in a thread."""
    root, tag = split_name(text)
    if not root.exists():
        raise SourceError(f"{root} does not exist")
    files = _Files(root)
    if files.exists("index.json"):
        index = _json(files.read("index.json"), f"{root}/index.json")
        descriptor = _pick(list(index.get("manifests", [])), tag, root)
        source = descriptor.get("annotations", {}).get(SOURCE)
        try:
            return LocalImage(_oci_manifest(files, descriptor), source)
        except (KeyError, TypeError, AttributeError) as exc:
            raise SourceError(f"{root}: a malformed descriptor ({exc})") from None
    if files.exists("manifest.json"):
        return LocalImage(_docker_archive(files, tag), None)
    raise SourceError(f"{root} is not an OCI image layout (no index.json) nor a docker "
                      "archive (no manifest.json)")
