"""Users from an htpasswd file of bcrypt hashes (`htpasswd -B`)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import time
from pathlib import Path

import bcrypt

# A bcrypt check costs ~100 ms of CPU by design; docker sends Basic credentials with
# every request, so a success is remembered briefly (by a keyed hash, never in clear).
CACHE_SECONDS = 60.0


class Htpasswd:
    def __init__(self, path: Path) -> None:
        self._hashes: dict[str, bytes] = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
                raise ValueError(f"{path}:{number}: expected user:bcrypt-hash")
            self._hashes[user] = hashed.encode()
        self._salt = hashlib.sha256(path.read_bytes()).digest()
        self._recent: dict[bytes, float] = {}

    async def check(self, user: str, password: str) -> bool:
        hashed = self._hashes.get(user)
        if hashed is None:
            # Spend the same time as for a real user, so timing does not reveal names.
            await asyncio.to_thread(bcrypt.checkpw, password.encode(), _dummy_hash())
            return False
        token = hmac.new(self._salt, f"{user}\0{password}".encode(), "sha256").digest()
        now = time.monotonic()
        seen = self._recent.get(token)
        if seen is not None and now - seen < CACHE_SECONDS:
            return True
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        if ok:
            if len(self._recent) > 10_000:
                self._recent.clear()
            self._recent[token] = now
        return ok


@functools.cache
def _dummy_hash() -> bytes:
    # Made on first use, not at import: a bcrypt hash costs ~60 ms of start-up otherwise.
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))
