"""`n` and `last` paging of tag and repository lists, with the `Link` header of the
next page (RFC 5988, as distribution writes it)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from gateway.errors import PAGINATION_NUMBER_INVALID, RegistryError

Fetch = Callable[[str, int], Awaitable[list[str] | None]]

_COUNT = re.compile(r"[0-9]{1,9}")
# Names fetched per storage call when a whole list is wanted.
_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class PageRequest:
    n: int | None  # None: no limit asked
    last: str


@dataclass(frozen=True, slots=True)
class Page:
    items: list[str]
    more: bool  # another page follows


def parse_page(query: Mapping[str, str], max_n: int) -> PageRequest:
    text = query.get("n")
    n = None
    if text is not None and text != "":
        if not _COUNT.fullmatch(text):
            raise RegistryError(PAGINATION_NUMBER_INVALID, detail={"n": text[:40]})
        # Asks beyond the bound get a full page and a Link rather than an error.
        n = min(int(text), max_n)
    return PageRequest(n, query.get("last", "")[:1024])


async def fetch_page(fetch: Fetch, request: PageRequest) -> Page | None:
    """One page of a lexically ordered list; None when storage knows no such list."""
    if request.n is not None:
        # One extra name tells whether a next page exists without a second call.
        items = await fetch(request.last, request.n + 1)
        if items is None:
            return None
        return Page(items[:request.n], len(items) > request.n)
    collected: list[str] = []
    last = request.last
    while True:
        items = await fetch(last, _BATCH)
        if items is None:
            return None
        collected.extend(items)
        if len(items) < _BATCH:
            return Page(collected, False)
        last = items[-1]


def next_link(path: str, n: int, last: str) -> str:
    query = urlencode({"n": n, "last": last}, quote_via=quote)
    return f'<{path}?{query}>; rel="next"'
