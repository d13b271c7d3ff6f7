"""Parsing of what a client names in a URL: repositories, tags, digests, upload ids.

Everything here is checked before storage sees it, so a malformed name is a 4xx with
the spec's error code rather than whatever a storage layer makes of it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from gateway.errors import DIGEST_INVALID, NAME_INVALID, RegistryError
from node.digests import ALGORITHMS, validate_digest
from node.errors import InvalidArgument
from node.names import MAX_NAME, is_repository, is_tag

__all__ = ["Digest", "is_tag", "is_upload_id", "looks_like_digest", "parse_digest",
           "parse_name"]

_UPLOAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,127}")


def parse_name(name: str) -> str:
    if len(name) > MAX_NAME:
        raise RegistryError(NAME_INVALID, f"repository name longer than {MAX_NAME}")
    if not is_repository(name):
        raise RegistryError(NAME_INVALID, "invalid repository name", {"name": name[:300]})
    return name


def is_upload_id(upload_id: str) -> bool:
    return _UPLOAD_ID.fullmatch(upload_id) is not None


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def parse_digest(text: str) -> Digest:
    """A digest we can verify; DIGEST_INVALID for a malformed one or another algorithm."""
    try:
        validate_digest(text)
    except InvalidArgument as problem:
        raise RegistryError(DIGEST_INVALID, str(problem),
                            {"digest": text[:200], "supported": sorted(ALGORITHMS)}) from None
    algorithm, _, encoded = text.partition(":")
    return Digest(algorithm, encoded)


def looks_like_digest(reference: str) -> bool:
    """Tags cannot hold ':', so a reference with one is meant as a digest."""
    return ":" in reference
