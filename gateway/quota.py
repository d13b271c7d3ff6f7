"""Quotas: logical bytes per repository glob, enforced where a push adds bytes.

A repository's usage is what `NodeAPI.repository_size` counts: the sizes of the blobs
linked in it plus its manifests' bytes (a layer shared by two repositories counts in
both, whatever deduplication saves on disk). A push that would take a repository past its
quota is refused with DENIED (403) before anything becomes visible: when an upload is
finished or a blob mounted, and when a manifest is put. Adding what the repository
already holds (a blob it links, a manifest it has) costs nothing, so retagging works
even over quota; deleting tags and manifests, then blobs, brings usage back down.

The check reads the usage, then the push commits: two pushes racing into one repository
can each pass and together overshoot by at most their own sizes. An exact count would
need the check inside the commit on every replica of the repository; a quota here is a
guard against runaway growth, not an accounting ledger.

```toml
[[quota]]
repositories = ["team/*"]     # globs, `*` also matches `/`; the first quota that matches wins
max = "1 GiB"                 # or a number of bytes; B, KB, MB, GB, TB, KiB, MiB, GiB, TiB
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from gateway.errors import DENIED, RegistryError
from node.api import NodeAPI
from shoal.sizes import format_size

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(value: object) -> int:
    """Bytes from 1048576, "500 MB" or "1.5 GiB"; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"expected a size such as 500 MB or 1 GiB, got {value!r}")
    return int(float(match.group(1)) * unit)


@dataclass(frozen=True, slots=True)
class Quota:
    repositories: tuple[str, ...]
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Quotas:
    quotas: tuple[Quota, ...] = ()

    def limit_for(self, repository: str) -> int | None:
        for quota in self.quotas:
            if any(fnmatchcase(repository, glob) for glob in quota.repositories):
                return quota.max_bytes
        return None

    async def check(self, api: NodeAPI, repository: str, adding: int) -> None:
        """DENIED when `adding` more bytes would take `repository` past its quota."""
        limit = self.limit_for(repository)
        if limit is None or adding <= 0:
            return
        used = await api.repository_size(repository)
        if used + adding <= limit:
            return
        after, quota = format_size(used + adding), format_size(limit)
        exact = f": {used + adding} of {limit} bytes" if after == quota else ""
        raise RegistryError(
            DENIED, f"repository {repository} is over its quota of {quota} "
                    f"({after} used with this push{exact})",
            detail={"quota": limit, "used": used, "push": adding})

    async def check_blob(self, api: NodeAPI, repository: str, digest: str, size: int) -> None:
        if self.limit_for(repository) is None:
            return
        if await api.stat_repository_blob(repository, digest) is not None:
            return  # already counted
        await self.check(api, repository, size)


def load(path: Path) -> Quotas:
    """The quotas of `path`, in file order; ValueError saying what is wrong."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if set(raw) - {"quota"} or not isinstance(raw.get("quota", []), list):
        raise ValueError(f"{path}: quotas are [[quota]] tables")
    quotas = []
    for i, entry in enumerate(raw.get("quota", [])):
        where = f"{path}: quota {i + 1}"
        if not isinstance(entry, dict) or set(entry) - {"repositories", "max"}:
            raise ValueError(f"{where}: a quota has `repositories` and `max`, nothing else")
        globs = entry.get("repositories")
        if not isinstance(globs, list) or not globs or not all(isinstance(g, str)
                                                               for g in globs):
            raise ValueError(f"{where}: `repositories` is a non-empty list of globs")
        if "max" not in entry:
            raise ValueError(f"{where}: `max` (bytes, or a size such as \"1 GiB\") is required")
        try:
            quotas.append(Quota(tuple(globs), parse_size(entry["max"])))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return Quotas(tuple(quotas))
