"""Byte ranges in headers: `Range` on blob reads, `Content-Range` on chunk uploads, and the
`Range` an upload session reports."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Numbers longer than this are absurd for any blob and not worth parsing.
_NUM = r"[0-9]{1,19}"
_RANGE = re.compile(rf"\s*bytes\s*=\s*({_NUM})?\s*-\s*({_NUM})?\s*")
_CONTENT_RANGE = re.compile(
    rf"\s*(?:bytes[ =])?\s*({_NUM})\s*-\s*({_NUM})\s*(?:/\s*(?:{_NUM}|\*))?\s*")


class Unsatisfiable(Exception):
    """The range asked for lies wholly outside the blob (416)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive, as HTTP writes it

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range a `Range` header asks of a `size`-byte blob.

    None means serve the whole blob: no header, a header we cannot parse, or several
    ranges (RFC 9110 lets a server ignore Range; clients resume with one range).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.groups()
    if first is None and last is None:
        return None
    if first is None:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last is not None and int(last) < start:
        return None  # invalid per RFC 9110, so ignored
    end = size - 1 if last is None else min(int(last), size - 1)
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, end)


def parse_content_range(header: str) -> ByteRange | None:
    """`<start>-<end>` of a chunk upload (a `bytes ` prefix and `/total` are tolerated);
    None when malformed or backwards."""
    match = _CONTENT_RANGE.fullmatch(header)
    if match is None:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        return None
    return ByteRange(start, end)


def upload_range(size: int) -> str:
    """The `Range` of an upload session of `size` bytes.

    An empty session reports `0-0`, as distribution does and every client expects,
    although it reads as one byte; clients take the next offset from later answers.
    """
    return f"0-{max(size - 1, 0)}"
