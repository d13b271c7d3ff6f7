"""Repository names and tags as the node accepts them.

The gateway checks them first, but the node is reachable over gRPC by any cluster member,
and its LMDB keys have a 511-byte limit: a name it cannot store must be a clear
InvalidArgument, never an internal error.
"""

from __future__ import annotations

import re

from node.errors import InvalidArgument

# The OCI distribution spec's grammar; 255 bytes is distribution's limit for a name.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME = 255


def validate_repository(name: str) -> str:
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise InvalidArgument(f"invalid repository name {name[:80]!r}")
    return name


def validate_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise InvalidArgument(f"invalid tag {tag[:80]!r}")
    return tag
