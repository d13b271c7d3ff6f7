"""The referrers API: GET /v2/<name>/referrers/<digest>[?artifactType=...].

The answer is always an OCI image index, empty when nothing refers to the subject
(even an unknown one), so clients never fall back to the tag schema needlessly.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.context import gateway_of
from gateway.manifest_format import OCI_INDEX
from gateway.names import parse_digest
from gateway.routing import Params


async def list_referrers(request: web.Request, params: Params) -> web.StreamResponse:
    gateway = gateway_of(request)
    subject = str(parse_digest(params["digest"]))
    wanted_type = request.rel_url.query.get("artifactType")
    descriptors = await gateway.api.list_referrers(params["name"], subject)
    headers = {}
    if wanted_type:
        descriptors = [d for d in descriptors if d.artifact_type == wanted_type]
        headers["OCI-Filters-Applied"] = "artifactType"
    manifests: list[dict[str, Any]] = []
    for d in descriptors:
        entry: dict[str, Any] = {"mediaType": d.media_type, "digest": d.digest, "size": d.size}
        if d.artifact_type:
            entry["artifactType"] = d.artifact_type
        if d.annotations:
            entry["annotations"] = d.annotations
        manifests.append(entry)
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return web.Response(body=json.dumps(body).encode(), content_type=OCI_INDEX,
                        headers=headers)
