"""What every response gets: the spec's JSON error body whatever went wrong, and the
Docker API version header that docker and containerd look for."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import (
    NOT_FOUND,
    UNKNOWN,
    UNSUPPORTED,
    ErrorCode,
    RegistryError,
    from_node_error,
)
from node.errors import NodeError
from node.request_id import REQUEST_ID, accept

log = logging.getLogger(__name__)

API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"
REQUEST_ID_HEADER = "X-Request-Id"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as error:
        return error.response()
    except NodeError as error:
        mapped = from_node_error(error)
        if mapped.code.status >= 500:
            log.warning("%s %s: node error %r", request.method, request.path, error)
        return mapped.response()
    except web.HTTPException as error:
        # aiohttp's own refusals (such as an unroutable path) in the spec's format.
        if error.status == 404:
            code = NOT_FOUND
        elif error.status == 405:
            code = UNSUPPORTED
        else:
            code = ErrorCode("UNKNOWN", error.status, error.reason)
        return RegistryError(code, error.reason).response()
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return RegistryError(UNKNOWN, "internal error").response()


async def add_api_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[API_VERSION_HEADER] = API_VERSION
    response.headers[REQUEST_ID_HEADER] = REQUEST_ID.get()


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler
                                ) -> web.StreamResponse:
    """Name the request (or keep the id a proxy in front gave it): every log line of it,
    here and on the nodes it calls, carries that id, and so does the response."""
    REQUEST_ID.set(accept(request.headers.get(REQUEST_ID_HEADER)))
    return await handler(request)
