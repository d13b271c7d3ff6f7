"""The version check (GET /v2/) and the repository catalog (GET /v2/_catalog)."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from gateway.context import gateway_of
from gateway.pagination import fetch_page, next_link, parse_page
from gateway.routing import Params


async def version_check(request: web.Request, params: Params) -> web.StreamResponse:
    return web.json_response({})


async def catalog(request: web.Request, params: Params) -> web.StreamResponse:
    gateway = gateway_of(request)
    config = gateway.config
    wanted = parse_page(request.rel_url.query, config.max_page_size)
    if wanted.n is None:
        # A registry may hold millions of repositories: page even when not asked to.
        wanted = replace(wanted, n=config.default_catalog_page)

    async def fetch(last: str, limit: int) -> list[str]:
        return await gateway.api.list_repositories(last, limit)

    page = await fetch_page(fetch, wanted)
    items = page.items if page is not None else []
    headers = {}
    if page is not None and page.more and wanted.n:
        headers["Link"] = next_link("/v2/_catalog", wanted.n, items[-1])
    return web.json_response({"repositories": items}, headers=headers)
