"""Manifests by tag or digest: GET, HEAD, PUT, DELETE.

A pull gets the bytes that were pushed, under the media type they were pushed with,
whatever its Accept header says: converting formats would change the digest, and a
client that cannot read the format fails either way.
"""

from __future__ import annotations

from aiohttp import web

from gateway.blobs import not_modified
from gateway.bodies import read_limited
from gateway.context import gateway_of
from gateway.errors import (
    DIGEST_INVALID,
    MANIFEST_BLOB_UNKNOWN,
    MANIFEST_INVALID,
    MANIFEST_TOO_LARGE,
    MANIFEST_UNKNOWN,
    ErrorCode,
    RegistryError,
)
from gateway.manifest_format import parse_manifest
from gateway.names import Digest, is_tag, looks_like_digest, parse_digest
from gateway.routing import Params
from node import errors as node_errors
from node.api import ManifestRecord

# distribution's code for a bad tag; the spec lets clients meet legacy codes.
TAG_INVALID = ErrorCode("TAG_INVALID", 400, "manifest tag did not match URI")


def _lookup_reference(reference: str) -> str | None:
    """The reference as storage knows it; None when it cannot name any manifest."""
    if looks_like_digest(reference):
        try:
            return str(parse_digest(reference))
        except RegistryError:
            return None
    return reference if is_tag(reference) else None


async def get(request: web.Request, params: Params) -> web.StreamResponse:
    """GET and HEAD /v2/<name>/manifests/<reference>."""
    gateway = gateway_of(request)
    reference = _lookup_reference(params["reference"])
    record = None
    if reference is not None:
        record = await gateway.api.get_manifest(params["name"], reference)
    if record is None:
        raise RegistryError(MANIFEST_UNKNOWN, detail={"reference": params["reference"][:200]})
    headers = {"Docker-Content-Digest": record.digest, "ETag": f'"{record.digest}"'}
    if not_modified(request, headers["ETag"]):
        return web.Response(status=304, headers=headers)
    # aiohttp drops the body of a HEAD answer and keeps its Content-Length.
    return web.Response(body=record.content, headers=headers,
                        content_type=record.media_type)


async def put(request: web.Request, params: Params) -> web.StreamResponse:
    """PUT /v2/<name>/manifests/<reference>."""
    gateway = gateway_of(request)
    name, reference = params["name"], params["reference"]
    wanted: Digest | None = None
    if looks_like_digest(reference):
        wanted = parse_digest(reference)
    elif not is_tag(reference):
        raise RegistryError(TAG_INVALID, "invalid tag", {"tag": reference[:200]})
    limit = gateway.config.max_manifest_size
    body = await read_limited(request, limit, gateway.config.body_idle_timeout)
    if body is None:
        raise RegistryError(MANIFEST_TOO_LARGE, f"manifest larger than {limit} bytes")
    parsed = parse_manifest(body, request.headers.get("Content-Type"))
    digest = Digest.of(body, wanted.algorithm if wanted else "sha256")
    if wanted is not None and digest != wanted:
        raise RegistryError(DIGEST_INVALID, detail={"expected": str(wanted),
                                                    "actual": str(digest)})
    record = ManifestRecord(str(digest), parsed.media_type, body, parsed.subject,
                            parsed.artifact_type, parsed.annotations)
    if (gateway.quotas.limit_for(name) is not None
            and await gateway.api.get_manifest(name, record.digest) is None):
        await gateway.quotas.check(gateway.api, name, len(body))
    try:
        await gateway.api.put_manifest(name, record, tags=() if wanted else (reference,),
                                       references=parsed.references)
    except node_errors.FailedPrecondition as error:
        raise RegistryError(MANIFEST_BLOB_UNKNOWN, detail=str(error)[:300]) from None
    except node_errors.InvalidArgument as error:
        raise RegistryError(MANIFEST_INVALID, detail=str(error)[:300]) from None
    headers = {
        "Location": f"/v2/{name}/manifests/{digest}",
        "Docker-Content-Digest": str(digest),
    }
    if parsed.subject:
        headers["OCI-Subject"] = parsed.subject
    return web.Response(status=201, headers=headers)


async def delete(request: web.Request, params: Params) -> web.StreamResponse:
    """DELETE /v2/<name>/manifests/<reference>: by digest the manifest and its tags go;
    by tag only the tag does."""
    gateway = gateway_of(request)
    name = params["name"]
    reference = _lookup_reference(params["reference"])
    if reference is None:
        deleted = False
    elif looks_like_digest(reference):
        deleted = await gateway.api.delete_manifest(name, reference)
    else:
        deleted = await gateway.api.delete_tag(name, reference)
    if not deleted:
        raise RegistryError(MANIFEST_UNKNOWN, detail={"reference": params["reference"][:200]})
    return web.Response(status=202)
