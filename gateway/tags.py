"""Tag listing: GET /v2/<name>/tags/list with `n` and `last`."""

from __future__ import annotations

from aiohttp import web

from gateway.context import gateway_of
from gateway.errors import NAME_UNKNOWN, RegistryError
from gateway.pagination import fetch_page, next_link, parse_page
from gateway.routing import Params


async def list_tags(request: web.Request, params: Params) -> web.StreamResponse:
    gateway = gateway_of(request)
    name = params["name"]
    wanted = parse_page(request.rel_url.query, gateway.config.max_page_size)

    async def fetch(last: str, limit: int) -> list[str] | None:
        return await gateway.api.list_tags(name, last, limit)

    page = await fetch_page(fetch, wanted)
    if page is None:
        raise RegistryError(NAME_UNKNOWN, detail={"name": name})
    headers = {}
    if page.more and wanted.n:
        headers["Link"] = next_link(f"/v2/{name}/tags/list", wanted.n, page.items[-1])
    return web.json_response({"name": name, "tags": page.items}, headers=headers)
