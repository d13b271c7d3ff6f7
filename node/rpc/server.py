"""The node's gRPC services, each a thin translation onto a LocalNode.

Bulk streams carry about 1 MiB per message (many small chunks packed together: 64 KiB
messages halve throughput), and each stream holds at most a few messages in memory.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from node.api import StoredChunk
from node.errors import FailedPrecondition, NodeError, NotFound
from node.gc.cluster import MemberCollector
from node.gc.collector import GarbageCollector
from node.grouping import by_size_async
from node.local import LocalNode
from node.request_id import METADATA_KEY, REQUEST_ID, accept
from node.rpc import convert, framing
from node.rpc.admin import add_admin
from node.rpc.metrics import observe
from node.rpc.options import MESSAGE_BYTES, SERVER_OPTIONS
from node.rpc.status import status_of
from node.rpc.tls import TlsFiles
from shoal.v1 import (
    blobs_pb2,
    blobs_pb2_grpc,
    chunks_pb2,
    chunks_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

log = logging.getLogger(__name__)


R = TypeVar("R")
Ctx = grpc.aio.ServicerContext[Any, Any]


async def _abort(context: Ctx, exc: BaseException) -> None:
    if isinstance(exc, NodeError):
        await context.abort(status_of(exc), str(exc))
    log.exception("unexpected error in a node call")
    await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


def _adopt_request_id(context: Ctx, name: str) -> None:
    offered = None
    for key, value in context.invocation_metadata() or ():
        if key == METADATA_KEY:
            offered = str(value)
    REQUEST_ID.set(accept(offered))
    log.debug("call %s", name)


def _code(context: Ctx, exc: BaseException | None) -> str:
    """The status code a call ended with, for the metrics."""
    if exc is None:
        return "OK"
    if isinstance(exc, NodeError):
        return status_of(exc).name
    if isinstance(exc, (ValueError, OSError)):
        return "INTERNAL"
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code() if hasattr(context, "code") else None  # set by context.abort
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def unary(fn: Callable[[Any, Any, Ctx], Awaitable[R]]) -> Callable[[Any, Any, Ctx], Awaitable[R]]:
    method = fn.__qualname__.replace("Service.", "/")

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: Ctx) -> R:
        _adopt_request_id(context, fn.__name__)
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await fn(self, request, context)
        except (NodeError, ValueError, OSError) as exc:
            failure = exc
            await _abort(context, exc)
            raise AssertionError("unreachable") from None
        except BaseException as exc:
            failure = exc
            raise
        finally:
            observe(method, _code(context, failure), time.perf_counter() - start)

    return wrapper


def streaming(fn: Callable[[Any, Any, Ctx], AsyncIterator[R]]
              ) -> Callable[[Any, Any, Ctx], AsyncIterator[R]]:
    method = fn.__qualname__.replace("Service.", "/")

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: Ctx) -> AsyncIterator[R]:
        _adopt_request_id(context, fn.__name__)
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            async for item in fn(self, request, context):
                yield item
        except (NodeError, ValueError, OSError) as exc:
            failure = exc
            await _abort(context, exc)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            observe(method, _code(context, failure), time.perf_counter() - start)

    return wrapper


class ChunkStoreService(chunks_pb2_grpc.ChunkStoreServicer):
    def __init__(self, node: LocalNode) -> None:
        self.node = node

    @unary
    async def Has(self, request: chunks_pb2.HasChunksRequest, context: Ctx
                  ) -> chunks_pb2.HasChunksResponse:
        ids = convert.split_ids(request.ids)
        if request.lengths:
            lengths = await self.node.chunk_lengths(ids)
            return chunks_pb2.HasChunksResponse(
                present=convert.bitmap([n is not None for n in lengths]),
                raw_lengths=convert.pack_lengths(lengths))
        flags = await self.node.has_chunks(ids)
        return chunks_pb2.HasChunksResponse(present=convert.bitmap(flags))

    @unary
    async def Put(self, request_iterator: AsyncIterator[bytes],
                  context: Ctx) -> chunks_pb2.PutChunksResponse:
        async def batches() -> AsyncIterator[Sequence[StoredChunk]]:
            async for message in request_iterator:  # framed: see start_server
                chunks, last = framing.decode_put(message)
                yield chunks
                if last:
                    return
            # grpc.aio may end the request stream of a cancelled call like a finished one.
            raise FailedPrecondition("put stream ended without its last message")

        result = await self.node.put_chunks(batches())
        return chunks_pb2.PutChunksResponse(stored=result.stored, duplicate=result.duplicate,
                                            stored_bytes=result.stored_bytes)

    @streaming
    async def Get(self, request: chunks_pb2.GetChunksRequest, context: Ctx
                  ) -> AsyncIterator[chunks_pb2.GetChunksResponse]:
        ids = convert.split_ids(request.ids)
        async for group in by_size_async(self.node.get_chunks(ids, request.skip_missing),
                                         MESSAGE_BYTES):
            yield framing.encode_chunks(group)  # type: ignore[misc]  # framed: see start_server


class BlobsService(blobs_pb2_grpc.BlobsServicer):
    def __init__(self, node: LocalNode) -> None:
        self.node = node

    @unary
    async def Stat(self, request: blobs_pb2.StatBlobRequest, context: Ctx) -> blobs_pb2.BlobInfo:
        info = await self.node.stat_blob(request.digest, request.referencing)
        if info is None:
            raise NotFound(f"blob {request.digest} is not stored")
        return convert.blob_to_pb(info)

    @unary
    async def Commit(self, request: blobs_pb2.CommitBlobRequest, context: Ctx
                     ) -> blobs_pb2.BlobInfo:
        recipe = convert.recipe_from_pb(request.recipe)
        return convert.blob_to_pb(await self.node.commit_blob(request.digest, recipe))

    @streaming
    async def Read(self, request: blobs_pb2.ReadBlobRequest, context: Ctx
                   ) -> AsyncIterator[blobs_pb2.ReadBlobResponse]:
        length = request.length if request.HasField("length") else None
        async for piece in self.node.read_blob(request.digest, request.offset, length):
            yield framing.encode_data(piece)  # type: ignore[misc]  # framed: see start_server

    @unary
    async def Delete(self, request: blobs_pb2.DeleteBlobRequest, context: Ctx
                     ) -> blobs_pb2.DeleteBlobResponse:
        return blobs_pb2.DeleteBlobResponse(deleted=await self.node.delete_blob(request.digest))

    @unary
    async def GetRecipe(self, request: blobs_pb2.GetRecipeRequest, context: Ctx
                        ) -> blobs_pb2.Recipe:
        return convert.recipe_to_pb(await self.node.get_recipe(request.digest))


class RegistryService(registry_pb2_grpc.RegistryServicer):
    def __init__(self, node: LocalNode) -> None:
        self.node = node

    @unary
    async def ListRepositories(self, request: registry_pb2.ListRequest, context: Ctx
                               ) -> registry_pb2.NameList:
        names = await self.node.list_repositories(request.last, request.limit)
        return registry_pb2.NameList(names=names, repository_known=True)

    @unary
    async def LinkBlob(self, request: registry_pb2.BlobLinkRequest, context: Ctx
                       ) -> registry_pb2.BlobLinkResponse:
        known = convert.blob_from_pb(request.known) if request.HasField("known") else None
        info = await self.node.link_blob(request.repository, request.digest, known,
                                         _stamp(request))
        return _link_response(info)

    @unary
    async def StatRepositoryBlob(self, request: registry_pb2.BlobLinkRequest, context: Ctx
                                 ) -> registry_pb2.BlobLinkResponse:
        info = await self.node.stat_repository_blob(request.repository, request.digest)
        return _link_response(info)

    @unary
    async def UnlinkBlob(self, request: registry_pb2.BlobLinkRequest, context: Ctx
                         ) -> registry_pb2.DeleteResponse:
        done = await self.node.unlink_blob(request.repository, request.digest, _stamp(request))
        return registry_pb2.DeleteResponse(deleted=done)

    @unary
    async def PutManifest(self, request: registry_pb2.PutManifestRequest, context: Ctx
                          ) -> registry_pb2.PutManifestResponse:
        await self.node.put_manifest(request.repository, convert.manifest_from_pb(request.manifest),
                                     list(request.tags), list(request.references),
                                     _stamp(request))
        return registry_pb2.PutManifestResponse()

    @unary
    async def GetManifest(self, request: registry_pb2.GetManifestRequest, context: Ctx
                          ) -> registry_pb2.Manifest:
        manifest = await self.node.get_manifest(request.repository, request.reference)
        if manifest is None:
            raise NotFound(f"manifest {request.reference} is unknown in {request.repository}")
        return convert.manifest_to_pb(manifest)

    @unary
    async def DeleteManifest(self, request: registry_pb2.DeleteRequest, context: Ctx
                             ) -> registry_pb2.DeleteResponse:
        done = await self.node.delete_manifest(request.repository, request.reference,
                                               _stamp(request))
        return registry_pb2.DeleteResponse(deleted=done)

    @unary
    async def DeleteTag(self, request: registry_pb2.DeleteRequest, context: Ctx
                        ) -> registry_pb2.DeleteResponse:
        done = await self.node.delete_tag(request.repository, request.reference, _stamp(request))
        return registry_pb2.DeleteResponse(deleted=done)

    @unary
    async def ListTags(self, request: registry_pb2.ListRequest, context: Ctx
                       ) -> registry_pb2.NameList:
        tags = await self.node.list_tags(request.repository, request.last, request.limit)
        return registry_pb2.NameList(names=tags or [], repository_known=tags is not None)

    @unary
    async def ListReferrers(self, request: registry_pb2.ListReferrersRequest, context: Ctx
                            ) -> registry_pb2.ReferrerList:
        found = await self.node.list_referrers(request.repository, request.subject)
        return registry_pb2.ReferrerList(referrers=[convert.descriptor_to_pb(d) for d in found])

    @unary
    async def ListManifests(self, request: registry_pb2.RepositoryRef, context: Ctx
                            ) -> registry_pb2.ManifestList:
        found = await self.node.list_manifests(request.repository)
        return registry_pb2.ManifestList(
            manifests=[convert.manifest_entry_to_pb(e) for e in found])

    @unary
    async def GetRepositorySize(self, request: registry_pb2.RepositoryRef, context: Ctx
                                ) -> registry_pb2.RepositorySize:
        return registry_pb2.RepositorySize(
            bytes=await self.node.repository_size(request.repository))

    @unary
    async def CreateUpload(self, request: registry_pb2.CreateUploadRequest, context: Ctx
                           ) -> registry_pb2.Upload:
        return convert.upload_to_pb(await self.node.create_upload(
            request.repository, request.owner, request.id))

    @unary
    async def GetUpload(self, request: registry_pb2.UploadRef, context: Ctx
                        ) -> registry_pb2.Upload:
        info = await self.node.get_upload(request.repository, request.id)
        if info is None:
            raise NotFound(f"upload {request.id} is unknown")
        return convert.upload_to_pb(info)

    @unary
    async def AppendUpload(self, request: registry_pb2.AppendUploadRequest, context: Ctx
                           ) -> registry_pb2.Upload:
        info = await self.node.append_upload(request.repository, request.id, request.offset,
                                             convert.recipe_from_pb(request.part))
        return convert.upload_to_pb(info)

    @unary
    async def GetUploadRecipe(self, request: registry_pb2.UploadRef, context: Ctx
                              ) -> blobs_pb2.Recipe:
        return convert.recipe_to_pb(await self.node.upload_recipe(request.repository,
                                                                  request.id))

    @streaming
    async def ReadUpload(self, request: registry_pb2.UploadRef, context: Ctx
                         ) -> AsyncIterator[blobs_pb2.ReadBlobResponse]:
        async for piece in self.node.read_upload(request.repository, request.id):
            yield framing.encode_data(piece)  # type: ignore[misc]  # framed: see start_server

    @unary
    async def FinishUpload(self, request: registry_pb2.FinishUploadRequest, context: Ctx
                           ) -> blobs_pb2.BlobInfo:
        expected = request.expected_size if request.HasField("expected_size") else None
        info = await self.node.finish_upload(request.repository, request.id, request.digest,
                                             expected)
        return convert.blob_to_pb(info)

    @unary
    async def CancelUpload(self, request: registry_pb2.UploadRef, context: Ctx
                           ) -> registry_pb2.DeleteResponse:
        done = await self.node.cancel_upload(request.repository, request.id)
        return registry_pb2.DeleteResponse(deleted=done)


def _stamp(request: Any) -> int | None:
    return int(request.stamp) if request.HasField("stamp") else None


def _link_response(info: Any) -> registry_pb2.BlobLinkResponse:
    if info is None:
        return registry_pb2.BlobLinkResponse(ok=False)
    return registry_pb2.BlobLinkResponse(ok=True, blob=convert.blob_to_pb(info))


def add_registry(server: grpc.aio.Server, node: LocalNode) -> None:
    framing.add_framed(server, registry_pb2_grpc.add_RegistryServicer_to_server,
                       RegistryService(node), reads=("ReadUpload",))


async def start_server(node: LocalNode, listen: str, tls: TlsFiles | None = None,
                       gc: GarbageCollector | None = None,
                       extra: Sequence[Callable[[grpc.aio.Server], None]] = (),
                       member_gc: MemberCollector | None = None
                       ) -> tuple[grpc.aio.Server, int]:
    """Serve `node` on `listen` (host:port; port 0 picks one), with mutual TLS when `tls`
    is given, the Admin service when `gc` or `member_gc` (a cluster member's) is, and
    whatever `extra` adds; returns the server and the port."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    # Bulk reads and puts skip protobuf's copies (node/rpc/framing.py); the bytes are the same.
    framing.add_framed(server, chunks_pb2_grpc.add_ChunkStoreServicer_to_server,
                       ChunkStoreService(node), reads=("Get",), puts=("Put",))
    framing.add_framed(server, blobs_pb2_grpc.add_BlobsServicer_to_server,
                       BlobsService(node), reads=("Read",))
    add_registry(server, node)
    services = ["", "shoal.v1.ChunkStore", "shoal.v1.Blobs", "shoal.v1.Registry"]
    if gc is not None or member_gc is not None:
        add_admin(server, gc, member_gc)
        services.append("shoal.v1.Admin")
    for add in extra:
        add(server)
    return server, await listen_and_start(server, listen, tls, services)


async def listen_and_start(server: grpc.aio.Server, listen: str, tls: TlsFiles | None,
                           services: Sequence[str]) -> int:
    """Add the standard health service (reporting `services` as serving once started),
    bind `listen` (with mutual TLS when `tls` is given), start; returns the bound port."""
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # no stub
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if tls is not None:
            port = server.add_secure_port(listen, tls.server_credentials())
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:  # how grpc reports a failed bind; its reason goes to its own log
        port = 0
    if port == 0:
        raise OSError(errno.EADDRINUSE,
                      f"cannot listen on {listen}: the address is in use or not this host's")
    await server.start()
    for service in services:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return port
