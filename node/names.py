"""Repository names and tags as the node accepts them.

The one grammar of the project: the gateway checks names with it before storage sees them
(to answer the spec's error codes), and the node checks them again, because it is
reachable over gRPC by any cluster member and its LMDB keys have a 511-byte limit.
"""

from __future__ import annotations

import re

from node.errors import InvalidArgument

# The OCI distribution spec's grammar; 255 bytes is distribution's limit for a name.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME = 255


def is_repository(name: str) -> bool:
    return len(name) <= MAX_NAME and _NAME.fullmatch(name) is not None


def is_tag(tag: str) -> bool:
    return _TAG.fullmatch(tag) is not None


def validate_repository(name: str) -> str:
    if not is_repository(name):
        raise InvalidArgument(f"invalid repository name {name[:80]!r}")
    return name


def validate_tag(tag: str) -> str:
    if not is_tag(tag):
        raise InvalidArgument(f"invalid tag {tag[:80]!r}")
    return tag
