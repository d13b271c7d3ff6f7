"""Upload sessions: a blob being pushed, kept as the recipe parts appended so far.

Sessions live in the node's index, not in a gateway's memory, so a push survives a
gateway restart and can continue through another gateway. Each appended part holds
references on its chunks, so nothing a session needs can be collected under it.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import uuid
from collections.abc import Callable

import lmdb

from node.api import BlobInfo, UploadInfo
from node.blobs import EMPTY_DIGESTS, BlobStore, ChunkRefs
from node.digests import validate_digest
from node.errors import FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from node.index import Index, fetch
from node.names import validate_repository
from node.recipe import Recipe

_PART = struct.Struct(">I")


def _check_id(upload_id: str) -> bytes:
    try:
        return str(uuid.UUID(upload_id)).encode()
    except ValueError:
        raise NotFound(f"upload {upload_id[:80]!r} is unknown") from None


# Records a finished upload's blob in its repository, inside the finishing transaction.
Link = Callable[[lmdb.Transaction, str, str, BlobInfo], None]


class Uploads:
    def __init__(self, index: Index, chunks: ChunkRefs, blobs: BlobStore, link: Link) -> None:
        self._index = index
        self._chunks = chunks
        self._blobs = blobs
        self._link = link
        self._sessions = index.db("uploads")
        self._parts = index.db("upload_parts")
        self._counts_lock = threading.Lock()
        self.logical_bytes = 0
        self.expired = 0

    def create(self, repository: str, owner: str = "", upload_id: str = "") -> UploadInfo:
        """A new session; `upload_id` lets a cluster client choose the id, which decides
        which node keeps the session."""
        validate_repository(repository)
        if upload_id:
            try:
                upload_id = str(uuid.UUID(upload_id))
            except ValueError:
                raise InvalidArgument(f"upload id {upload_id[:80]!r} is not a UUID") from None
        info = UploadInfo(upload_id or str(uuid.uuid4()), repository, 0,
                          int(time.time() * 1000), owner)
        record = json.dumps({"repository": repository, "size": 0, "parts": 0, "owner": owner,
                             "started_at_ms": info.started_at_ms,
                             "touched_at_ms": info.started_at_ms}).encode()
        def run(txn: lmdb.Transaction) -> None:
            if not txn.put(info.id.encode(), record, db=self._sessions, overwrite=False):
                raise FailedPrecondition(f"upload {info.id} exists")

        self._index.write(run)
        return info

    def _load(self, txn: lmdb.Transaction, repository: str, upload_id: str
              ) -> tuple[bytes, dict[str, int | str]]:
        uid = _check_id(upload_id)
        raw = fetch(txn, uid, self._sessions)
        if raw is None:
            raise NotFound(f"upload {upload_id} is unknown")
        session: dict[str, int | str] = json.loads(raw)
        if session["repository"] != repository:
            raise NotFound(f"upload {upload_id} is unknown in {repository}")
        return uid, session

    @staticmethod
    def _info(uid: bytes, session: dict[str, int | str]) -> UploadInfo:
        return UploadInfo(uid.decode(), str(session["repository"]), int(session["size"]),
                          int(session["started_at_ms"]), str(session.get("owner", "")))

    def get(self, repository: str, upload_id: str) -> UploadInfo | None:
        try:
            uid, session = self._index.read(lambda txn: self._load(txn, repository, upload_id))
        except NotFound:
            return None
        return self._info(uid, session)

    def append(self, repository: str, upload_id: str, offset: int, part: Recipe) -> UploadInfo:
        def run(txn: lmdb.Transaction) -> UploadInfo:
            uid, session = self._load(txn, repository, upload_id)
            if offset != session["size"]:
                raise OutOfRange(
                    f"append at {offset} but upload {upload_id} has {session['size']} bytes")
            if part:
                self._chunks.add_refs(txn, part, +1)
                number = int(session["parts"])
                txn.put(uid + b"\0" + _PART.pack(number), part.pack(), db=self._parts)
                session["parts"] = number + 1
                session["size"] = int(session["size"]) + part.size
                session["touched_at_ms"] = int(time.time() * 1000)
                txn.put(uid, json.dumps(session).encode(), db=self._sessions)
            return self._info(uid, session)

        info = self._index.write(run)
        with self._counts_lock:
            self.logical_bytes += part.size
        return info

    def recipe(self, repository: str, upload_id: str) -> Recipe:
        def run(txn: lmdb.Transaction) -> Recipe:
            uid, _ = self._load(txn, repository, upload_id)
            return Recipe.concat(Recipe.unpack(v) for _, v in
                                 self._index.scan_prefix(txn, "upload_parts", uid + b"\0"))

        return self._index.read(run)

    def finish(self, repository: str, upload_id: str, digest: str,
               expected_size: int | None = None) -> BlobInfo:
        validate_digest(digest)

        def run(txn: lmdb.Transaction) -> BlobInfo:
            uid, session = self._load(txn, repository, upload_id)
            if expected_size is not None and session["size"] != expected_size:
                raise FailedPrecondition(
                    f"upload {upload_id} has {session['size']} bytes, not {expected_size}")
            parts = list(self._index.scan_prefix(txn, "upload_parts", uid + b"\0"))
            recipe = Recipe.concat(Recipe.unpack(v) for _, v in parts)
            if not recipe and digest not in EMPTY_DIGESTS:
                raise InvalidArgument(f"an empty upload cannot be {digest}")
            info = self._blobs.commit_in(txn, digest, recipe, refs_held=True)
            self._drop(txn, uid, [k for k, _ in parts])
            self._link(txn, repository, digest, info)
            return info

        return self._index.write(run)

    def cancel(self, repository: str, upload_id: str) -> bool:
        def run(txn: lmdb.Transaction) -> bool:
            try:
                uid, _ = self._load(txn, repository, upload_id)
            except NotFound:
                return False
            parts = list(self._index.scan_prefix(txn, "upload_parts", uid + b"\0"))
            recipe = Recipe.concat(Recipe.unpack(v) for _, v in parts)
            self._chunks.add_refs(txn, recipe, -1)
            self._drop(txn, uid, [k for k, _ in parts])
            return True

        return self._index.write(run)

    def expire(self, idle_ms: int, now_ms: int | None = None) -> list[str]:
        """Cancel every session idle for longer than `idle_ms` (clients abandon pushes all
        the time, and each session holds references on its chunks); returns their ids."""
        cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - idle_ms

        def stale(txn: lmdb.Transaction) -> list[tuple[str, str]]:
            found = []
            for uid, raw in txn.cursor(db=self._sessions):
                session = json.loads(bytes(raw))
                touched = int(session.get("touched_at_ms", session["started_at_ms"]))
                if touched < cutoff:
                    found.append((str(session["repository"]), bytes(uid).decode()))
            return found

        expired = []
        for repository, upload_id in self._index.read(stale):
            if self.cancel(repository, upload_id):
                expired.append(upload_id)
        with self._counts_lock:
            self.expired += len(expired)
        return expired

    def _drop(self, txn: lmdb.Transaction, uid: bytes, part_keys: list[bytes]) -> None:
        for k in part_keys:
            txn.delete(k, db=self._parts)
        txn.delete(uid, db=self._sessions)
