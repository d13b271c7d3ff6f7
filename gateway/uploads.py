"""Blob pushes: monolithic, chunked (PATCH with Content-Range), streamed (PATCH without),
resumable (GET the session's Range) and cross-repository mounts.

Sessions live on the node; this gateway only remembers a running sha256 per session
(gateway/hashes.py). A blob is committed only after its bytes hash to the digest the
client names, so a mismatch or a broken body never makes a blob visible.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from gateway.auth.audit import USER
from gateway.bodies import hash_stream, request_pieces
from gateway.context import Gateway, gateway_of
from gateway.errors import (
    BLOB_UPLOAD_INVALID,
    BLOB_UPLOAD_UNKNOWN,
    DIGEST_INVALID,
    SIZE_INVALID,
    UPLOAD_OUT_OF_ORDER,
    RegistryError,
)
from gateway.hashes import RUNNING_ALGORITHM
from gateway.names import Digest, is_upload_id, parse_digest, parse_name
from gateway.ranges import parse_content_range, upload_range
from gateway.routing import Params
from node import errors as node_errors
from node.api import UploadInfo
from node.blobio import append_stream

log = logging.getLogger(__name__)


def _session_headers(name: str, upload: UploadInfo) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload.id}",
        "Range": upload_range(upload.size),
        "Docker-Upload-UUID": upload.id,
    }


def _created(name: str, digest: str) -> web.Response:
    return web.Response(status=201, headers={
        "Location": f"/v2/{name}/blobs/{digest}",
        "Docker-Content-Digest": digest,
    })


async def _session(gateway: Gateway, name: str, upload_id: str,
                   request: web.Request | None = None) -> UploadInfo:
    """The session, if it exists and (with `request`) belongs to whoever is asking: another
    user's session is answered as unknown, so its existence is not even revealed."""
    upload = None
    if is_upload_id(upload_id):
        upload = await gateway.api.get_upload(name, upload_id)
    if upload is None or (request is not None and upload.owner != _user(request)):
        raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id[:200]})
    return upload


def _user(request: web.Request) -> str:
    return str(request.get(USER) or "")


def _declared_length(request: web.Request, upload: UploadInfo) -> int | None:
    """The chunk length a PATCH or final PUT declares, after checking its Content-Range
    starts where the session ends; None for a streamed body of unknown length."""
    header = request.headers.get("Content-Range")
    if header is None:
        return request.content_length
    byte_range = parse_content_range(header)
    if byte_range is None:
        raise RegistryError(BLOB_UPLOAD_INVALID, "malformed Content-Range",
                            {"Content-Range": header[:100]})
    if byte_range.start != upload.size:
        raise RegistryError(UPLOAD_OUT_OF_ORDER,
                            f"chunk starts at {byte_range.start}, session has {upload.size}",
                            headers=_session_headers(upload.repository, upload))
    length = request.content_length
    if length is not None and length != byte_range.length:
        raise RegistryError(SIZE_INVALID,
                            f"Content-Length {length} but Content-Range of {byte_range.length}")
    return byte_range.length


async def _append_body(gateway: Gateway, request: web.Request, upload: UploadInfo,
                       expected: int | None) -> UploadInfo:
    hasher = gateway.hashes.take(upload.id, upload.size)
    body = request_pieces(request, gateway.config.body_idle_timeout, expected)
    try:
        upload = await append_stream(gateway.api, upload.repository, upload.id, upload.size,
                                     body, hasher)
    except node_errors.OutOfRange:
        # Another request appended first; report where the session now stands.
        current = await _session(gateway, upload.repository, upload.id)
        raise RegistryError(UPLOAD_OUT_OF_ORDER, "upload moved on concurrently",
                            headers=_session_headers(current.repository, current)) from None
    except node_errors.NotFound:
        raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload.id}) from None
    if hasher is not None:
        gateway.hashes.keep(upload.id, upload.size, hasher)
    return upload


async def _finish(gateway: Gateway, upload: UploadInfo, digest: Digest) -> None:
    """Commit the session as `digest` when its bytes hash to it; cancel it otherwise,
    as distribution does, so a bad push leaves nothing behind."""
    hasher = None
    if digest.algorithm == RUNNING_ALGORITHM:
        hasher = gateway.hashes.take(upload.id, upload.size)
    gateway.hashes.drop(upload.id)
    if hasher is not None:
        actual = f"{digest.algorithm}:{hasher.hexdigest()}"
    else:
        actual = await hash_stream(
            gateway.api.read_upload(upload.repository, upload.id), digest.algorithm)
    if actual != str(digest):
        await gateway.api.cancel_upload(upload.repository, upload.id)
        raise RegistryError(DIGEST_INVALID, detail={"expected": str(digest), "actual": actual})
    try:
        await gateway.quotas.check_blob(gateway.api, upload.repository, str(digest),
                                        upload.size)
    except RegistryError:
        # Refused for good: the client starts over, if at all, so the bytes can go.
        await gateway.api.cancel_upload(upload.repository, upload.id)
        raise
    try:
        # The size pins the commit to exactly the bytes hashed above.
        await gateway.api.finish_upload(upload.repository, upload.id, str(digest),
                                        expected_size=upload.size)
    except node_errors.NotFound:
        raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload.id}) from None
    except node_errors.FailedPrecondition:
        raise RegistryError(BLOB_UPLOAD_INVALID, "upload changed while it was being finished",
                            detail={"upload": upload.id}) from None


async def start(request: web.Request, params: Params) -> web.StreamResponse:
    """POST /v2/<name>/blobs/uploads/: mount, monolithic push, or a new session."""
    gateway = gateway_of(request)
    name = params["name"]
    query = request.rel_url.query
    mounted = await _try_mount(gateway, name, query.get("mount"), query.get("from"))
    if mounted is not None:
        return _created(name, mounted)
    digest = parse_digest(query["digest"]) if "digest" in query else None
    if digest is None:
        upload = await gateway.api.create_upload(name, _user(request))
        return web.Response(status=202, headers=_session_headers(name, upload))
    # Nobody but this request knows the session of a monolithic push, so it must not
    # outlive the request, even one cancelled while the session was being created.
    creating = asyncio.ensure_future(gateway.api.create_upload(name, _user(request)))
    try:
        upload = await asyncio.shield(creating)
    except asyncio.CancelledError:
        gateway.clean_up_later(_cancel_created(gateway, creating))
        raise
    try:
        upload = await _append_body(gateway, request, upload, request.content_length)
        await _finish(gateway, upload, digest)
    except BaseException:
        gateway.hashes.drop(upload.id)
        gateway.clean_up_later(gateway.api.cancel_upload(name, upload.id))
        raise
    return _created(name, str(digest))


async def _cancel_created(gateway: Gateway, creating: asyncio.Future[UploadInfo]) -> None:
    upload = await creating
    await gateway.api.cancel_upload(upload.repository, upload.id)


async def _try_mount(gateway: Gateway, name: str, digest_text: str | None,
                     source: str | None) -> str | None:
    """The digest mounted from `source`, or None to fall back to a session (202), which is
    what the spec asks when a mount cannot be done; DENIED when the blob would take the
    repository past its quota, as the upload it falls back to would be at its end."""
    if not digest_text or not source:
        return None
    try:
        digest = str(parse_digest(digest_text))
        parse_name(source)
    except RegistryError:
        return None
    found = await gateway.api.stat_repository_blob(source, digest)
    if found is None:
        return None
    await gateway.quotas.check_blob(gateway.api, name, digest, found.size)
    if await gateway.api.link_blob(name, digest) is None:
        return None
    return digest


async def status(request: web.Request, params: Params) -> web.StreamResponse:
    """GET /v2/<name>/blobs/uploads/<id>: where a resumable push stands."""
    upload = await _session(gateway_of(request), params["name"], params["upload"], request)
    return web.Response(status=204, headers=_session_headers(params["name"], upload))


async def patch(request: web.Request, params: Params) -> web.StreamResponse:
    """PATCH /v2/<name>/blobs/uploads/<id>: append a chunk or a stream."""
    gateway = gateway_of(request)
    upload = await _session(gateway, params["name"], params["upload"], request)
    expected = _declared_length(request, upload)
    upload = await _append_body(gateway, request, upload, expected)
    return web.Response(status=202, headers=_session_headers(params["name"], upload))


async def finish(request: web.Request, params: Params) -> web.StreamResponse:
    """PUT /v2/<name>/blobs/uploads/<id>?digest=: optional last chunk, then commit."""
    gateway = gateway_of(request)
    name = params["name"]
    digest_text = request.rel_url.query.get("digest")
    if not digest_text:
        raise RegistryError(DIGEST_INVALID, "digest query parameter missing")
    digest = parse_digest(digest_text)
    upload = await _session(gateway, name, params["upload"], request)
    if request.body_exists:
        expected = _declared_length(request, upload)
        upload = await _append_body(gateway, request, upload, expected)
    await _finish(gateway, upload, digest)
    return _created(name, str(digest))


async def cancel(request: web.Request, params: Params) -> web.StreamResponse:
    """DELETE /v2/<name>/blobs/uploads/<id>."""
    gateway = gateway_of(request)
    upload_id = params["upload"]
    await _session(gateway, params["name"], upload_id, request)
    cancelled = await gateway.api.cancel_upload(params["name"], upload_id)
    if not cancelled:
        raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id[:200]})
    gateway.hashes.drop(upload_id)
    return web.Response(status=204)
