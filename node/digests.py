"""OCI digests: `algorithm:hex`, the names of blobs and manifests."""

from __future__ import annotations

import hashlib
import re

from node.errors import InvalidArgument

# Lengths of the hex part for the algorithms the OCI image spec registers.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")
# The OCI image spec's algorithm grammar: anything else is malformed, not unsupported.
_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")


def validate_digest(digest: str) -> str:
    """`digest` when it is a well-formed sha256 or sha512 digest; InvalidArgument else."""
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not _ALGORITHM.fullmatch(algorithm) or not encoded:
        raise InvalidArgument("malformed digest")
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm[:40]!r}")
    if len(encoded) != ALGORITHMS[algorithm] or not _HEX.fullmatch(encoded):
        raise InvalidArgument(f"malformed {algorithm} digest")
    return digest


def hasher_for(digest: str) -> hashlib._Hash:
    return hashlib.new(validate_digest(digest).partition(":")[0])

