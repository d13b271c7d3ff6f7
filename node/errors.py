"""Errors a node raises through its client API.

Each maps one-to-one onto a gRPC status code (node/rpc/status.py), so a caller sees the
same exception whether the node is in-process or across the network.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error a node reports to its callers."""


class NotFound(NodeError):
    """The blob, chunk, manifest, tag, repository or upload does not exist."""


class InvalidArgument(NodeError):
    """The request is malformed: a bad digest, recipe or range."""


class FailedPrecondition(NodeError):
    """The request is well formed but the state does not allow it (missing chunks,
    an upload offset that is not the session's size, a manifest whose references are
    missing)."""


class OutOfRange(NodeError):
    """A read or append outside the object's bounds."""


class DataLoss(NodeError):
    """Stored bytes failed verification: a corrupted chunk was found and reported."""


class ResourceExhausted(NodeError):
    """The node cannot take more: disk full, or a message or object over its limit."""


class Unavailable(NodeError):
    """The node cannot be reached or is shutting down; the caller may retry elsewhere."""
