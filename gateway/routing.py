"""URL dispatch for /v2/: repository names hold slashes, so routes are matched on the
raw path by suffix, and a bad name is answered NAME_INVALID rather than a bare 404."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway.errors import NOT_FOUND, UNSUPPORTED, RegistryError
from gateway.metrics import ROUTE
from gateway.names import parse_name

Params = dict[str, str]
Handler = Callable[[web.Request, Params], Awaitable[web.StreamResponse]]

_NAME = r"(?P<name>.+?)"


@dataclass(frozen=True, slots=True)
class Endpoint:
    pattern: re.Pattern[str]
    methods: Mapping[str, Handler]


def endpoint(suffix: str, methods: Mapping[str, Handler], *, named: bool = True) -> Endpoint:
    """An endpoint at /v2/<name><suffix>, or at /v2<suffix> when not `named`."""
    prefix = f"/v2/{_NAME}" if named else "/v2"
    return Endpoint(re.compile(prefix + suffix), methods)


Guard = Callable[[web.Request, str, dict[str, str]], Awaitable[None]]


class Router:
    def __init__(self, endpoints: Sequence[Endpoint], guard: Guard | None = None) -> None:
        # Order matters: `/blobs/uploads` must be tried before `/blobs/<digest>`.
        self._endpoints = tuple(endpoints)
        # Called with the route and its parameters before the handler: raises to refuse.
        self._guard = guard

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        for candidate in self._endpoints:
            match = candidate.pattern.fullmatch(path)
            if match is None:
                continue
            method = request.method
            handler = candidate.methods.get(method)
            if handler is None and method == "HEAD":
                handler = candidate.methods.get("GET")
            if handler is None:
                allowed = ", ".join(sorted(candidate.methods))
                raise RegistryError(UNSUPPORTED, f"{method[:20]} is not allowed here",
                                    headers={"Allow": allowed})
            params = match.groupdict()
            route = f"{handler.__module__.rpartition('.')[2]}.{handler.__name__}"
            request[ROUTE] = route
            if "name" in params:
                parse_name(params["name"])
            if self._guard is not None:
                await self._guard(request, route, params)
            return await handler(request, params)
        raise RegistryError(NOT_FOUND, "no such endpoint", {"path": path[:300]})
