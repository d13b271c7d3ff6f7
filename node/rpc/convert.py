"""Between protobuf messages and the client API's dataclasses."""

from __future__ import annotations

import json
from collections.abc import Sequence

from node.api import (
    BlobInfo,
    Descriptor,
    ManifestEntry,
    ManifestRecord,
    UploadInfo,
)
from node.chunking import CHUNK_ID_SIZE
from node.errors import InvalidArgument
from node.recipe import Recipe
from shoal.v1 import blobs_pb2, registry_pb2


def split_ids(packed: bytes) -> list[bytes]:
    if len(packed) % CHUNK_ID_SIZE:
        raise InvalidArgument(f"{len(packed)} bytes of ids is not a multiple of {CHUNK_ID_SIZE}")
    return [packed[i:i + CHUNK_ID_SIZE] for i in range(0, len(packed), CHUNK_ID_SIZE)]


_BINARY_DIGITS = bytes.maketrans(b"\x00\x01", b"01")


def bitmap(flags: list[bool]) -> bytes:
    """Flag i as bit i & 7 of byte i >> 3. Built in C: the flags as 0/1 bytes, as binary
    digits most significant first, as one integer (a Has answer has a flag per chunk)."""
    if not flags:
        return b""
    digits = bytes(flags).translate(_BINARY_DIGITS)[::-1]
    return int(digits, 2).to_bytes((len(flags) + 7) // 8, "little")


def unbitmap(packed: bytes, count: int) -> list[bool]:
    return [bool(packed[i >> 3] & (1 << (i & 7))) if (i >> 3) < len(packed) else False
            for i in range(count)]


def pack_lengths(lengths: Sequence[int | None]) -> bytes:
    return b"".join((n or 0).to_bytes(4, "big") for n in lengths)


def unpack_lengths(packed: bytes, count: int) -> list[int | None]:
    if len(packed) != 4 * count:
        raise InvalidArgument(f"{len(packed)} bytes of lengths for {count} chunks")
    return [int.from_bytes(packed[i:i + 4], "big") or None for i in range(0, len(packed), 4)]


def blob_to_pb(b: BlobInfo) -> blobs_pb2.BlobInfo:
    return blobs_pb2.BlobInfo(digest=b.digest, size=b.size, chunk_count=b.chunk_count)


def blob_from_pb(b: blobs_pb2.BlobInfo) -> BlobInfo:
    return BlobInfo(b.digest, b.size, b.chunk_count)


def recipe_to_pb(r: Recipe) -> blobs_pb2.Recipe:
    return blobs_pb2.Recipe(entries=r.pack())


def recipe_from_pb(r: blobs_pb2.Recipe) -> Recipe:
    return Recipe.unpack(r.entries)


def _annotations(raw: str) -> dict[str, str]:
    if not raw:
        return {}
    value = json.loads(raw)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def manifest_to_pb(m: ManifestRecord) -> registry_pb2.Manifest:
    return registry_pb2.Manifest(
        digest=m.digest, media_type=m.media_type, content=m.content, subject=m.subject,
        artifact_type=m.artifact_type,
        annotations_json=json.dumps(m.annotations) if m.annotations else "")


def manifest_from_pb(m: registry_pb2.Manifest) -> ManifestRecord:
    return ManifestRecord(m.digest, m.media_type, m.content, m.subject, m.artifact_type,
                          _annotations(m.annotations_json))


def descriptor_to_pb(d: Descriptor) -> registry_pb2.Descriptor:
    return registry_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, artifact_type=d.artifact_type,
        annotations_json=json.dumps(d.annotations) if d.annotations else "")


def descriptor_from_pb(d: registry_pb2.Descriptor) -> Descriptor:
    return Descriptor(d.media_type, d.digest, d.size, d.artifact_type,
                      _annotations(d.annotations_json))


def upload_to_pb(u: UploadInfo) -> registry_pb2.Upload:
    return registry_pb2.Upload(id=u.id, repository=u.repository, size=u.size,
                               started_at_ms=u.started_at_ms, owner=u.owner)


def upload_from_pb(u: registry_pb2.Upload) -> UploadInfo:
    return UploadInfo(u.id, u.repository, u.size, u.started_at_ms, u.owner)


def manifest_entry_to_pb(e: ManifestEntry) -> registry_pb2.ManifestEntry:
    return registry_pb2.ManifestEntry(digest=e.digest, media_type=e.media_type, stamp=e.stamp,
                                      tags=list(e.tags), subject=e.subject, size=e.size)


def manifest_entry_from_pb(e: registry_pb2.ManifestEntry) -> ManifestEntry:
    return ManifestEntry(e.digest, e.media_type, e.stamp, tuple(e.tags), e.subject, e.size)
