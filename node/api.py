"""The node's client API: the one seam between the gateway and storage.

`NodeAPI` has two implementations that pass the same shared test suite
(tests/node/test_api_conformance.py): `node.local.LocalNode`, in-process, for the
single-node default where a gRPC hop would only burn a core; and `node.remote.RemoteNode`,
over gRPC, for clusters. Errors are the exceptions of `node.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from node.hlc import stamp_ms
from node.recipe import Recipe


class Codec(IntEnum):
    """How a chunk is encoded; values match shoal.v1.Codec."""

    RAW = 0
    ZSTD = 1


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk as it travels and rests: `id` is SHA-256 of the decoded bytes. `data` may
    be a memoryview into a larger buffer, so chunking copies nothing."""

    id: bytes
    codec: Codec
    raw_length: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class PutResult:
    stored: int = 0
    duplicate: int = 0
    stored_bytes: int = 0


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    chunk_count: int


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    content: bytes
    subject: str = ""  # digest of the manifest this one refers to, "" when none
    artifact_type: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """A manifest as a repository holds it, for retention and listings: what it is, when
    it was last pushed (the hybrid-clock stamp of its write; node/hlc.py) and its tags."""

    digest: str
    media_type: str
    stamp: int                 # orders pushes exactly; pushed_at_ms is its wall-clock part
    tags: tuple[str, ...] = ()
    subject: str = ""
    size: int = 0              # bytes of the manifest itself

    @property
    def pushed_at_ms(self) -> int:
        return stamp_ms(self.stamp)


@dataclass(frozen=True, slots=True)
class UploadInfo:
    id: str
    repository: str
    size: int
    started_at_ms: int
    owner: str = ""  # the user who opened it: only they may continue it


class ChunkAPI(Protocol):
    """The narrow view a chunk writer or a peer needs."""

    async def has_chunks(self, ids: Sequence[bytes]) -> list[bool]:
        """Which chunks are stored. One reported present stays for at least the garbage
        collection grace period, time for the caller to reference it instead of sending it."""

    async def put_chunks(self, batches: AsyncIterable[Sequence[StoredChunk]]) -> PutResult:
        """Store chunks, verifying each id; durable and visible once this returns."""
        ...

    def get_chunks(self, ids: Sequence[bytes]) -> AsyncIterator[StoredChunk]:
        """Verified chunks in the order asked, encoded as stored."""
        ...


class NodeAPI(ChunkAPI, Protocol):
    # Blobs.
    async def stat_blob(self, digest: str) -> BlobInfo | None: ...

    async def commit_blob(self, digest: str, recipe: Recipe) -> BlobInfo: ...

    def read_blob(self, digest: str, offset: int = 0, length: int | None = None
                  ) -> AsyncIterator[bytes | memoryview]:
        """The bytes [offset, offset + length) as a stream of pieces of about 1 MiB. A piece
        may be a memoryview of a read buffer: serving it needs no copy of its own."""
        ...

    async def delete_blob(self, digest: str) -> bool: ...

    async def get_recipe(self, digest: str) -> Recipe: ...

    # Repositories and the blobs they may serve.
    async def list_repositories(self, last: str = "", limit: int = 0) -> list[str]: ...

    async def link_blob(self, repository: str, digest: str) -> BlobInfo | None:
        """Make an existing blob part of `repository` (a cross-repository mount);
        None when the blob does not exist."""
        ...

    async def stat_repository_blob(self, repository: str, digest: str) -> BlobInfo | None: ...

    async def unlink_blob(self, repository: str, digest: str) -> bool: ...

    # Manifests, tags, referrers.
    async def put_manifest(self, repository: str, manifest: ManifestRecord,
                           tags: Sequence[str] = (), references: Sequence[str] = ()) -> None:
        """Store a manifest and point `tags` at it. `references` are the digests of blobs
        and manifests it needs; FailedPrecondition names the first one missing."""
        ...

    async def get_manifest(self, repository: str, reference: str) -> ManifestRecord | None:
        """By tag or by digest."""
        ...

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """Removes the manifest from the repository, and every tag pointing at it."""
        ...

    async def delete_tag(self, repository: str, tag: str) -> bool: ...

    async def list_tags(self, repository: str, last: str = "", limit: int = 0
                        ) -> list[str] | None:
        """Tags in lexical order after `last`; None when the repository is unknown."""
        ...

    async def list_referrers(self, repository: str, subject: str) -> list[Descriptor]: ...

    async def list_manifests(self, repository: str) -> list[ManifestEntry]:
        """Every manifest in `repository` with its tags, in digest order; [] when the
        repository is unknown."""
        ...

    async def repository_size(self, repository: str) -> int:
        """Logical bytes of `repository`: the sizes of the blobs linked in it plus its
        manifests' bytes (what a quota counts); 0 when unknown. Read from the link and
        manifest entries, never from the blobs."""
        ...

    # Upload sessions: they live on the node so they outlive any one gateway.
    async def create_upload(self, repository: str, owner: str = "") -> UploadInfo: ...

    async def get_upload(self, repository: str, upload_id: str) -> UploadInfo | None: ...

    async def append_upload(self, repository: str, upload_id: str, offset: int,
                            part: Recipe) -> UploadInfo:
        """Append chunks already stored. `offset` must equal the session's size
        (OutOfRange otherwise), which makes a retried or reordered append harmless."""
        ...

    def read_upload(self, repository: str, upload_id: str
                    ) -> AsyncIterator[bytes | memoryview]: ...

    async def finish_upload(self, repository: str, upload_id: str, digest: str,
                            expected_size: int | None = None) -> BlobInfo:
        """Turn the session into blob `digest`, link it to the repository, end the session.
        The caller has verified the digest of the bytes; with `expected_size`, a session of
        any other size is refused (FailedPrecondition) and left as it was."""
        ...

    async def cancel_upload(self, repository: str, upload_id: str) -> bool: ...

    async def close(self) -> None: ...
