"""Retention policies: the TOML file and which policy governs a repository.

```toml
[[policy]]
repositories = ["team/*"]              # globs; `*` also matches `/`; first policy wins
keep_last = 10                          # the 10 most recently pushed tags
keep_tags = ['v\\d+(\\.\\d+)*', "latest"]  # regular expressions matching the whole tag
untagged_older_than = "14d"             # manifests with no tag, pushed longer ago
```

Tag patterns are regular expressions, not globs: release schemes (`v1.2.3`, `2024.05.1`)
need alternatives and digit classes that globs cannot say, and `re.fullmatch` makes
`latest` mean exactly `latest`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_KEYS = frozenset({"repositories", "keep_last", "keep_tags", "untagged_older_than"})


def parse_duration_ms(text: str) -> int:
    """Milliseconds from "90s", "15m", "12h", "7d" or "2w"; ValueError otherwise."""
    value = text.strip().lower()
    scale = _UNITS_MS.get(value[-1:])
    if scale is None or not value[:-1].replace(".", "", 1).isdigit():
        raise ValueError(f"expected a duration such as 12h, 7d or 2w, got {text!r}")
    return int(float(value[:-1]) * scale)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    repositories: tuple[str, ...]
    keep_last: int | None = None
    keep_tags: tuple[re.Pattern[str], ...] = ()
    untagged_older_than_ms: int | None = None
    untagged_older_than: str = ""      # as written, for reports

    def applies_to(self, repository: str) -> bool:
        return any(fnmatchcase(repository, glob) for glob in self.repositories)

    @property
    def prunes_tags(self) -> bool:
        """Without keep_last or keep_tags a policy leaves every tag alone."""
        return self.keep_last is not None or bool(self.keep_tags)


def policy_for(policies: list[RetentionPolicy], repository: str) -> RetentionPolicy | None:
    return next((p for p in policies if p.applies_to(repository)), None)


def _one(path: Path, i: int, raw: object) -> RetentionPolicy:
    where = f"{path}: policy {i + 1}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    globs = raw.get("repositories")
    if not isinstance(globs, list) or not globs or not all(isinstance(g, str) for g in globs):
        raise ValueError(f"{where}: `repositories` is a non-empty list of globs")
    keep_last = raw.get("keep_last")
    if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 0
                                  or isinstance(keep_last, bool)):
        raise ValueError(f"{where}: `keep_last` is a number of tags, 0 or more")
    patterns = raw.get("keep_tags", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"{where}: `keep_tags` is a list of regular expressions")
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"{where}: keep_tags {pattern!r}: {exc}") from None
    older = raw.get("untagged_older_than")
    older_ms = None
    if older is not None:
        if not isinstance(older, str):
            raise ValueError(f"{where}: `untagged_older_than` is a duration such as \"7d\"")
        try:
            older_ms = parse_duration_ms(older)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return RetentionPolicy(tuple(globs), keep_last, tuple(compiled), older_ms, older or "")


def load(path: Path) -> list[RetentionPolicy]:
    """The policies of `path`, in file order; ValueError saying what is wrong."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    unknown = set(raw) - {"policy"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; policies are [[policy]]")
    entries = raw.get("policy", [])
    if not isinstance(entries, list):
        raise ValueError(f"{path}: policies are [[policy]] tables")
    return [_one(path, i, entry) for i, entry in enumerate(entries)]
