"""Node errors <-> gRPC status codes, one to one, so RemoteNode raises what LocalNode does."""

from __future__ import annotations

import grpc

from node import errors

TO_STATUS: dict[type[errors.NodeError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}
FROM_STATUS = {code: exc for exc, code in TO_STATUS.items()}


def status_of(exc: errors.NodeError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in TO_STATUS:
            return TO_STATUS[cls]
    return grpc.StatusCode.UNKNOWN


def error_of(code: grpc.StatusCode, details: str) -> errors.NodeError:
    """The node error a failed call stands for; transport failures (deadline, cancelled,
    unreachable) are Unavailable, which callers may retry on another node."""
    cls = FROM_STATUS.get(code)
    if cls is None:
        return errors.Unavailable(f"{code.name}: {details}")
    return cls(details)
