"""Parsing of what a client names in a URL: repositories, tags, digests, upload ids.

Everything here is checked before storage sees it, so a malformed name is a 4xx with
the spec's error code rather than whatever a storage layer makes of it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from gateway.errors import DIGEST_INVALID, NAME_INVALID, RegistryError

# distribution-spec v1.1 `<name>` grammar.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
# Many clients cap host + "/" + name at 255 characters; the name alone can be no longer.
MAX_NAME_LENGTH = 255

_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

# OCI image-spec digest grammar: algorithm ":" encoded.
_DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
# Algorithms we verify, with the length of their lowercase hex encoding.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")

_UPLOAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,127}")


def parse_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError(NAME_INVALID, f"repository name longer than {MAX_NAME_LENGTH}")
    if not _NAME.fullmatch(name):
        raise RegistryError(NAME_INVALID, "invalid repository name", {"name": name[:300]})
    return name


def is_tag(reference: str) -> bool:
    return _TAG.fullmatch(reference) is not None


def is_upload_id(upload_id: str) -> bool:
    return _UPLOAD_ID.fullmatch(upload_id) is not None


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def parse_digest(text: str) -> Digest:
    """A digest we can verify; DIGEST_INVALID for a malformed one or another algorithm."""
    match = _DIGEST.fullmatch(text)
    if match is None:
        raise RegistryError(DIGEST_INVALID, "malformed digest", {"digest": text[:200]})
    algorithm, encoded = match.groups()
    if algorithm not in ALGORITHMS:
        raise RegistryError(DIGEST_INVALID, f"unsupported digest algorithm {algorithm[:40]!r}",
                            {"supported": sorted(ALGORITHMS)})
    if len(encoded) != ALGORITHMS[algorithm] or not _HEX.fullmatch(encoded):
        raise RegistryError(DIGEST_INVALID, f"malformed {algorithm} digest",
                            {"digest": text[:200]})
    return Digest(algorithm, encoded)


def looks_like_digest(reference: str) -> bool:
    """Tags cannot hold ':', so a reference with one is meant as a digest."""
    return ":" in reference
