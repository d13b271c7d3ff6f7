"""`RemoteNode`: the node's client API over gRPC.

Every unary call has a deadline; bulk streams have a longer one (a multi-GiB layer takes
minutes on a slow link) and HTTP/2 keepalive to notice a dead peer sooner. Transport
failures surface as node.errors.Unavailable, so a caller can try another node.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

import grpc

from node.api import (
    BlobInfo,
    Descriptor,
    ManifestEntry,
    ManifestRecord,
    PutResult,
    StoredChunk,
    UploadInfo,
)
from node.errors import NodeError, NotFound
from node.recipe import Recipe
from node.request_id import METADATA_KEY, REQUEST_ID
from node.rpc import convert, framing
from node.rpc.options import CHANNEL_OPTIONS
from node.rpc.status import error_of
from node.rpc.tls import TlsFiles
from shoal.v1 import (
    blobs_pb2,
    blobs_pb2_grpc,
    chunks_pb2,
    chunks_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

UNARY_DEADLINE = 30.0
STREAM_DEADLINE = 3600.0
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


def _metadata() -> tuple[tuple[str, str], ...]:
    request_id = REQUEST_ID.get()
    return ((METADATA_KEY, request_id),) if request_id else ()


def _raise(exc: grpc.aio.AioRpcError) -> NodeError:
    return error_of(exc.code(), exc.details() or "")


class RemoteNode:
    def __init__(self, target: str, unary_deadline: float = UNARY_DEADLINE,
                 stream_deadline: float = STREAM_DEADLINE, tls: TlsFiles | None = None) -> None:
        self.target = target
        if tls is not None:
            self._channel = grpc.aio.secure_channel(target, tls.channel_credentials(),
                                                    options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._chunks = chunks_pb2_grpc.ChunkStoreStub(self._channel)
        self._blobs = blobs_pb2_grpc.BlobsStub(self._channel)
        self._registry = registry_pb2_grpc.RegistryStub(self._channel)
        # The bulk reads and puts, framed by hand (node/rpc/framing.py).
        self._read_blob = self._channel.unary_stream(
            "/shoal.v1.Blobs/Read", request_serializer=blobs_pb2.ReadBlobRequest.SerializeToString,
            response_deserializer=framing.decode_data)
        self._read_upload = self._channel.unary_stream(
            "/shoal.v1.Registry/ReadUpload",
            request_serializer=registry_pb2.UploadRef.SerializeToString,
            response_deserializer=framing.decode_data)
        self._get_chunks = self._channel.unary_stream(
            "/shoal.v1.ChunkStore/Get",
            request_serializer=chunks_pb2.GetChunksRequest.SerializeToString,
            response_deserializer=framing.decode_chunks)
        self._put_chunks = self._channel.stream_unary(
            "/shoal.v1.ChunkStore/Put", request_serializer=None,
            response_deserializer=chunks_pb2.PutChunksResponse.FromString)
        self._unary = unary_deadline
        self._stream = stream_deadline

    @property
    def channel(self) -> grpc.aio.Channel:
        """For the other services a cluster member speaks on the same connection."""
        return self._channel

    async def close(self) -> None:
        await self._channel.close(None)

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._unary, metadata=_metadata())
        except grpc.aio.AioRpcError as exc:
            raise _raise(exc) from None

    async def _stream_from(self, method: Any, request: Any) -> AsyncIterator[Any]:
        call = method(request, timeout=self._stream, metadata=_metadata())
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise _raise(exc) from None
        finally:
            call.cancel()

    async def _data_from(self, method: Any, request: Any) -> AsyncIterator[bytes | memoryview]:
        """The pieces of a bulk read (`method` decodes each message to its data). Read one
        by one rather than with `async for`, whose iterator keeps the last piece: a slow
        client would otherwise hold a second piece while it is sent."""
        call = method(request, timeout=self._stream, metadata=_metadata())
        try:
            while True:
                data = await call.read()
                if data is _EOF:
                    break
                yield data
        except grpc.aio.AioRpcError as exc:
            raise _raise(exc) from None
        finally:
            call.cancel()

    # -- chunks ---------------------------------------------------------------------------

    async def has_chunks(self, ids: Sequence[bytes]) -> list[bool]:
        reply = await self._call(self._chunks.Has,
                                 chunks_pb2.HasChunksRequest(ids=b"".join(ids)))
        return convert.unbitmap(reply.present, len(ids))

    async def chunk_lengths(self, ids: Sequence[bytes]) -> list[int | None]:
        """Each chunk's raw length, None when it is not stored here."""
        reply = await self._call(self._chunks.Has,
                                 chunks_pb2.HasChunksRequest(ids=b"".join(ids), lengths=True))
        return convert.unpack_lengths(reply.raw_lengths, len(ids))

    async def put_chunks(self, batches: AsyncIterable[Sequence[StoredChunk]]) -> PutResult:
        async def requests() -> AsyncIterator[bytes]:
            async for batch in batches:
                yield framing.encode_chunks(batch)
            yield framing.encode_chunks((), last=True)

        try:
            reply = await self._put_chunks(requests(), timeout=self._stream,
                                           metadata=_metadata())
        except grpc.aio.AioRpcError as exc:
            raise _raise(exc) from None
        return PutResult(reply.stored, reply.duplicate, reply.stored_bytes)

    async def get_chunks(self, ids: Sequence[bytes], skip_missing: bool = False
                         ) -> AsyncIterator[StoredChunk]:
        request = chunks_pb2.GetChunksRequest(ids=b"".join(ids), skip_missing=skip_missing)
        async for chunks in self._stream_from(self._get_chunks, request):
            for chunk in chunks:
                yield chunk

    # -- blobs ------------------------------------------------------------------------------

    async def stat_blob(self, digest: str, referencing: bool = False) -> BlobInfo | None:
        try:
            reply = await self._call(self._blobs.Stat, blobs_pb2.StatBlobRequest(
                digest=digest, referencing=referencing))
        except NotFound:
            return None
        return convert.blob_from_pb(reply)

    async def commit_blob(self, digest: str, recipe: Recipe) -> BlobInfo:
        request = blobs_pb2.CommitBlobRequest(digest=digest, recipe=convert.recipe_to_pb(recipe))
        return convert.blob_from_pb(await self._call(self._blobs.Commit, request))

    async def read_blob(self, digest: str, offset: int = 0, length: int | None = None
                        ) -> AsyncIterator[bytes | memoryview]:
        request = blobs_pb2.ReadBlobRequest(digest=digest, offset=offset)
        if length is not None:
            request.length = length
        async for data in self._data_from(self._read_blob, request):
            yield data

    async def delete_blob(self, digest: str) -> bool:
        reply = await self._call(self._blobs.Delete, blobs_pb2.DeleteBlobRequest(digest=digest))
        return bool(reply.deleted)

    async def get_recipe(self, digest: str) -> Recipe:
        reply = await self._call(self._blobs.GetRecipe, blobs_pb2.GetRecipeRequest(digest=digest))
        return convert.recipe_from_pb(reply)

    # -- registry ---------------------------------------------------------------------------

    async def list_repositories(self, last: str = "", limit: int = 0) -> list[str]:
        reply = await self._call(self._registry.ListRepositories,
                                 registry_pb2.ListRequest(last=last, limit=limit))
        return list(reply.names)

    async def _link(self, method: Any, request: registry_pb2.BlobLinkRequest
                    ) -> BlobInfo | None:
        reply = await self._call(method, request)
        return convert.blob_from_pb(reply.blob) if reply.ok else None

    # The keyword arguments beyond NodeAPI's are a cluster client's replica writes
    # (node/local.py has the other side).

    async def link_blob(self, repository: str, digest: str, known: BlobInfo | None = None,
                        stamp: int | None = None) -> BlobInfo | None:
        request = registry_pb2.BlobLinkRequest(repository=repository, digest=digest,
                                               stamp=stamp)
        if known is not None:
            request.known.CopyFrom(convert.blob_to_pb(known))
        return await self._link(self._registry.LinkBlob, request)

    async def stat_repository_blob(self, repository: str, digest: str) -> BlobInfo | None:
        return await self._link(self._registry.StatRepositoryBlob,
                                registry_pb2.BlobLinkRequest(repository=repository,
                                                             digest=digest))

    async def unlink_blob(self, repository: str, digest: str, stamp: int | None = None
                          ) -> bool:
        reply = await self._call(self._registry.UnlinkBlob,
                                 registry_pb2.BlobLinkRequest(repository=repository,
                                                              digest=digest, stamp=stamp))
        return bool(reply.deleted)

    async def put_manifest(self, repository: str, manifest: ManifestRecord,
                           tags: Sequence[str] = (), references: Sequence[str] = (),
                           stamp: int | None = None) -> None:
        await self._call(self._registry.PutManifest, registry_pb2.PutManifestRequest(
            repository=repository, manifest=convert.manifest_to_pb(manifest), tags=list(tags),
            references=list(references), stamp=stamp))

    async def get_manifest(self, repository: str, reference: str) -> ManifestRecord | None:
        try:
            reply = await self._call(self._registry.GetManifest, registry_pb2.GetManifestRequest(
                repository=repository, reference=reference))
        except NotFound:
            return None
        return convert.manifest_from_pb(reply)

    async def delete_manifest(self, repository: str, digest: str, stamp: int | None = None
                              ) -> bool:
        reply = await self._call(self._registry.DeleteManifest, registry_pb2.DeleteRequest(
            repository=repository, reference=digest, stamp=stamp))
        return bool(reply.deleted)

    async def delete_tag(self, repository: str, tag: str, stamp: int | None = None) -> bool:
        reply = await self._call(self._registry.DeleteTag, registry_pb2.DeleteRequest(
            repository=repository, reference=tag, stamp=stamp))
        return bool(reply.deleted)

    async def list_tags(self, repository: str, last: str = "", limit: int = 0
                        ) -> list[str] | None:
        reply = await self._call(self._registry.ListTags, registry_pb2.ListRequest(
            repository=repository, last=last, limit=limit))
        return list(reply.names) if reply.repository_known else None

    async def list_referrers(self, repository: str, subject: str) -> list[Descriptor]:
        reply = await self._call(self._registry.ListReferrers, registry_pb2.ListReferrersRequest(
            repository=repository, subject=subject))
        return [convert.descriptor_from_pb(d) for d in reply.referrers]

    async def list_manifests(self, repository: str) -> list[ManifestEntry]:
        reply = await self._call(self._registry.ListManifests,
                                 registry_pb2.RepositoryRef(repository=repository))
        return [convert.manifest_entry_from_pb(e) for e in reply.manifests]

    async def repository_size(self, repository: str) -> int:
        reply = await self._call(self._registry.GetRepositorySize,
                                 registry_pb2.RepositoryRef(repository=repository))
        return int(reply.bytes)

    # -- uploads ----------------------------------------------------------------------------

    async def create_upload(self, repository: str, owner: str = "", upload_id: str = ""
                            ) -> UploadInfo:
        reply = await self._call(self._registry.CreateUpload,
                                 registry_pb2.CreateUploadRequest(repository=repository,
                                                                  owner=owner, id=upload_id))
        return convert.upload_from_pb(reply)

    async def upload_recipe(self, repository: str, upload_id: str) -> Recipe:
        reply = await self._call(self._registry.GetUploadRecipe,
                                 registry_pb2.UploadRef(repository=repository, id=upload_id))
        return convert.recipe_from_pb(reply)

    async def get_upload(self, repository: str, upload_id: str) -> UploadInfo | None:
        try:
            reply = await self._call(self._registry.GetUpload,
                                     registry_pb2.UploadRef(repository=repository, id=upload_id))
        except NotFound:
            return None
        return convert.upload_from_pb(reply)

    async def append_upload(self, repository: str, upload_id: str, offset: int,
                            part: Recipe) -> UploadInfo:
        reply = await self._call(self._registry.AppendUpload, registry_pb2.AppendUploadRequest(
            repository=repository, id=upload_id, offset=offset, part=convert.recipe_to_pb(part)))
        return convert.upload_from_pb(reply)

    async def read_upload(self, repository: str, upload_id: str
                          ) -> AsyncIterator[bytes | memoryview]:
        request = registry_pb2.UploadRef(repository=repository, id=upload_id)
        async for data in self._data_from(self._read_upload, request):
            yield data

    async def finish_upload(self, repository: str, upload_id: str, digest: str,
                            expected_size: int | None = None) -> BlobInfo:
        request = registry_pb2.FinishUploadRequest(repository=repository, id=upload_id,
                                                   digest=digest)
        if expected_size is not None:
            request.expected_size = expected_size
        reply = await self._call(self._registry.FinishUpload, request)
        return convert.blob_from_pb(reply)

    async def cancel_upload(self, repository: str, upload_id: str) -> bool:
        reply = await self._call(self._registry.CancelUpload,
                                 registry_pb2.UploadRef(repository=repository, id=upload_id))
        return bool(reply.deleted)

