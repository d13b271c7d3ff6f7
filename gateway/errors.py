"""The spec's error codes, the exception handlers raise, and the JSON body clients parse."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node import errors as node_errors


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    status: int
    message: str


BLOB_UNKNOWN = ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry")
BLOB_UPLOAD_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
BLOB_UPLOAD_UNKNOWN = ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
DIGEST_INVALID = ErrorCode("DIGEST_INVALID", 400,
                           "provided digest did not match uploaded content")
MANIFEST_BLOB_UNKNOWN = ErrorCode("MANIFEST_BLOB_UNKNOWN", 400,
                                  "manifest references a blob or manifest unknown to registry")
MANIFEST_INVALID = ErrorCode("MANIFEST_INVALID", 400, "manifest invalid")
MANIFEST_UNKNOWN = ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown")
NAME_INVALID = ErrorCode("NAME_INVALID", 400, "invalid repository name")
NAME_UNKNOWN = ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry")
SIZE_INVALID = ErrorCode("SIZE_INVALID", 400, "provided length did not match content length")
UNAUTHORIZED = ErrorCode("UNAUTHORIZED", 401, "authentication required")
DENIED = ErrorCode("DENIED", 403, "requested access to the resource is denied")
UNSUPPORTED = ErrorCode("UNSUPPORTED", 405, "the operation is unsupported")
TOOMANYREQUESTS = ErrorCode("TOOMANYREQUESTS", 429, "too many requests")

# Not in the spec's list; clients treat unknown codes as UNKNOWN. distribution uses these.
RANGE_INVALID = ErrorCode("RANGE_INVALID", 416, "requested range not satisfiable")
PAGINATION_NUMBER_INVALID = ErrorCode("PAGINATION_NUMBER_INVALID", 400,
                                      "invalid number of results requested")
NOT_FOUND = ErrorCode("NOT_FOUND", 404, "no such endpoint")
MANIFEST_TOO_LARGE = ErrorCode("MANIFEST_INVALID", 413, "manifest too large")
UPLOAD_OUT_OF_ORDER = ErrorCode("BLOB_UPLOAD_INVALID", 416, "chunk out of order")
UNAVAILABLE = ErrorCode("UNAVAILABLE", 503, "service unavailable")
STORAGE_FULL = ErrorCode("UNAVAILABLE", 507, "insufficient storage")
UNKNOWN = ErrorCode("UNKNOWN", 500, "unknown error")
BAD_REQUEST = ErrorCode("UNKNOWN", 400, "bad request")


class RegistryError(Exception):
    """Raised by handlers; the error middleware turns it into the spec's JSON answer."""

    def __init__(self, code: ErrorCode, message: str = "", detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> web.Response:
        entry: dict[str, Any] = {"code": self.code.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        # aiohttp keeps Content-Length and drops the body itself when answering a HEAD.
        return web.Response(status=self.code.status, headers=self.headers,
                            content_type="application/json", charset="utf-8",
                            body=json.dumps({"errors": [entry]}).encode())


def from_node_error(error: node_errors.NodeError) -> RegistryError:
    """The generic mapping; handlers that know better (a NotFound of what?) map first."""
    detail = str(error)[:500]
    if isinstance(error, node_errors.NotFound):
        return RegistryError(NOT_FOUND, "not found", detail)
    if isinstance(error, node_errors.InvalidArgument):
        return RegistryError(BAD_REQUEST, "invalid argument", detail)
    if isinstance(error, node_errors.FailedPrecondition):
        return RegistryError(BAD_REQUEST, "failed precondition", detail)
    if isinstance(error, node_errors.OutOfRange):
        return RegistryError(RANGE_INVALID, detail=detail)
    if isinstance(error, node_errors.ResourceExhausted):
        return RegistryError(STORAGE_FULL, detail=detail)
    if isinstance(error, node_errors.Unavailable):
        return RegistryError(UNAVAILABLE, detail=detail, headers={"Retry-After": "1"})
    # DataLoss and anything new: a fault of ours, not of the request.
    return RegistryError(UNKNOWN, detail=detail)
