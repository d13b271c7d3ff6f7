"""Repository metadata: which blobs a repository may serve, its manifests, its tags and
the referrers of its manifests. This is where a tag is resolved.

Links, manifests-in-a-repository and tags are last-writer-wins entries (node/lww.py)
stamped by a hybrid clock, so the replicas of a repository in a cluster converge whatever
order writes reach them. A write carries the stamp its caller chose (a cluster gateway
stamps once and sends the same write to every replica) or takes one from this node's clock.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence

import lmdb

from node import lww
from node.api import BlobInfo, Descriptor, ManifestEntry, ManifestRecord
from node.blobs import BlobStore
from node.digests import validate_digest
from node.errors import FailedPrecondition, InvalidArgument
from node.gc import reachability
from node.hlc import HybridClock
from node.index import Index, fetch, key
from node.names import validate_repository, validate_tag
from node.recipe import Recipe

MAX_LIST = 10_000
_LINK = struct.Struct(">QI")  # a linked blob's size and chunk count

# Tables whose entries are LWW registers; the others only ever gain entries whose value
# is fixed by their key (content addressing), so merging them is a union.
STAMPED = ("repo_blobs", "repo_manifests", "tags")
UNION = ("repositories", "manifests", "referrers")


def _is_digest(reference: str) -> bool:
    return ":" in reference


def pack_link(info: BlobInfo) -> bytes:
    return _LINK.pack(info.size, info.chunk_count)


class Registry:
    def __init__(self, index: Index, blobs: BlobStore, clock: HybridClock) -> None:
        self._index = index
        self._blobs = blobs
        self._db = index.db
        self.clock = clock

    def _stamp(self, stamp: int | None) -> int:
        if stamp is None:
            return self.clock.now()
        self.clock.observe(stamp)
        return stamp

    # -- repositories and their blobs ------------------------------------------------------

    def list_repositories(self, last: str, limit: int) -> list[str]:
        def run(txn: lmdb.Transaction) -> list[str]:
            names = []
            for k, _ in self._index.scan_prefix(txn, "repositories", b"", last.encode()):
                names.append(k.decode())
                if len(names) >= (limit or MAX_LIST):
                    break
            return names

        return self._index.read(run)

    def link_in(self, txn: lmdb.Transaction, repository: str, digest: str, info: BlobInfo,
                stamp: int) -> None:
        txn.put(repository.encode(), b"", db=self._db("repositories"))
        lww.put(txn, self._db("repo_blobs"), key(repository, digest),
                lww.pack(stamp, pack_link(info)))

    def link_blob(self, repository: str, digest: str, known: BlobInfo | None = None,
                  stamp: int | None = None) -> BlobInfo | None:
        """Link a blob stored here, or, with `known`, one the caller vouches for (in a
        cluster a blob lives on its own owners, not on its repository's)."""
        validate_repository(repository)
        validate_digest(digest)
        at = self._stamp(stamp)

        def run(txn: lmdb.Transaction) -> BlobInfo | None:
            info = known
            if info is None:
                # Checked in the same transaction as the link, so garbage collection cannot
                # delete the blob in between and leave a link to nothing.
                packed = fetch(txn, digest.encode(), self._db("blobs"))
                if packed is None:
                    return None
                recipe = Recipe.unpack(packed)
                info = BlobInfo(digest, recipe.size, len(recipe))
            self.link_in(txn, repository, digest, info, at)
            reachability.referenced(self._index, txn, [digest])
            return info

        return self._index.write(run)

    def stat_repository_blob(self, repository: str, digest: str) -> BlobInfo | None:
        linked = self._index.read(
            lambda txn: lww.get(txn, self._db("repo_blobs"), key(repository, digest)))
        if linked is None:
            return None
        size, chunk_count = _LINK.unpack(linked)
        return BlobInfo(digest, size, chunk_count)

    def unlink_blob(self, repository: str, digest: str, stamp: int | None = None) -> bool:
        at = self._stamp(stamp)
        return self._index.write(
            lambda txn: self._tombstone(txn, "repo_blobs", key(repository, digest), at))

    def _tombstone(self, txn: lmdb.Transaction, table: str, k: bytes, stamp: int) -> bool:
        """Delete by writing a tombstone; whether a live entry was there."""
        db = self._db(table)
        was_live = lww.get(txn, db, k) is not None
        lww.put(txn, db, k, lww.pack(stamp, None))
        return was_live

    # -- manifests and tags ------------------------------------------------------------------

    def put_manifest(self, repository: str, manifest: ManifestRecord, tags: Sequence[str],
                     references: Sequence[str], stamp: int | None = None) -> None:
        validate_repository(repository)
        for tag in tags:
            validate_tag(tag)
        for ref in references:
            validate_digest(ref)
        validate_digest(manifest.digest)
        if manifest.subject:
            validate_digest(manifest.subject)
        meta = json.dumps({
            "media_type": manifest.media_type, "subject": manifest.subject,
            "artifact_type": manifest.artifact_type, "annotations": manifest.annotations,
            "size": len(manifest.content),
        }).encode()
        at = self._stamp(stamp)

        def run(txn: lmdb.Transaction) -> None:
            for ref in references:
                if (lww.get(txn, self._db("repo_blobs"), key(repository, ref)) is None
                        and lww.get(txn, self._db("repo_manifests"),
                                    key(repository, ref)) is None):
                    raise FailedPrecondition(f"{ref} is not in repository {repository}")
            reachability.referenced(self._index, txn, references)
            txn.put(repository.encode(), b"", db=self._db("repositories"))
            txn.put(manifest.digest.encode(), manifest.content, db=self._db("manifests"))
            lww.put(txn, self._db("repo_manifests"), key(repository, manifest.digest),
                    lww.pack(at, meta))
            for tag in tags:
                lww.put(txn, self._db("tags"), key(repository, tag),
                        lww.pack(at, manifest.digest.encode()))
            if manifest.subject:
                descriptor = json.dumps({
                    "mediaType": manifest.media_type, "digest": manifest.digest,
                    "size": len(manifest.content), "artifactType": manifest.artifact_type,
                    "annotations": manifest.annotations,
                }).encode()
                txn.put(key(repository, manifest.subject, manifest.digest), descriptor,
                        db=self._db("referrers"))

        self._index.write(run)

    def resolve(self, txn: lmdb.Transaction, repository: str, reference: str) -> str | None:
        """The manifest digest a tag or digest reference names in `repository`."""
        if _is_digest(reference):
            found = lww.get(txn, self._db("repo_manifests"), key(repository, reference))
            return reference if found is not None else None
        digest = lww.get(txn, self._db("tags"), key(repository, reference))
        if digest is None or not self._has_manifest(txn, repository, digest):
            return None
        return digest.decode()

    def _has_manifest(self, txn: lmdb.Transaction, repository: str, digest: bytes) -> bool:
        # A replica can learn of a tag write after the delete of the manifest it names
        # (the delete's tag tombstones then missed it): such a tag is gone all the same.
        return lww.get(txn, self._db("repo_manifests"), key(repository, digest)) is not None

    def get_manifest(self, repository: str, reference: str) -> ManifestRecord | None:
        def run(txn: lmdb.Transaction) -> ManifestRecord | None:
            digest = self.resolve(txn, repository, reference)
            if digest is None:
                return None
            meta_raw = lww.get(txn, self._db("repo_manifests"), key(repository, digest))
            content = fetch(txn, digest.encode(), self._db("manifests"))
            if meta_raw is None or content is None:
                return None
            meta = json.loads(meta_raw)
            return ManifestRecord(digest, meta["media_type"], content, meta["subject"],
                                  meta["artifact_type"], meta["annotations"])

        return self._index.read(run)

    def delete_manifest(self, repository: str, digest: str, stamp: int | None = None) -> bool:
        """Remove the manifest from the repository with every tag that points at it; its
        referrer entry goes with it (listing skips referrers whose manifest is gone)."""
        if not _is_digest(digest):
            raise InvalidArgument("manifests are deleted by digest")
        at = self._stamp(stamp)

        def run(txn: lmdb.Transaction) -> bool:
            if not self._tombstone(txn, "repo_manifests", key(repository, digest), at):
                return False
            tags = self._db("tags")
            pointing = [k for k, v in self._index.scan_prefix(txn, "tags", key(repository, b""))
                        if lww.payload(v) == digest.encode()]
            for k in pointing:
                lww.put(txn, tags, k, lww.pack(at, None))
            return True

        return self._index.write(run)

    def delete_tag(self, repository: str, tag: str, stamp: int | None = None) -> bool:
        at = self._stamp(stamp)
        return self._index.write(
            lambda txn: self._tombstone(txn, "tags", key(repository, tag), at))

    def list_tags(self, repository: str, last: str, limit: int) -> list[str] | None:
        def run(txn: lmdb.Transaction) -> list[str] | None:
            if fetch(txn, repository.encode(), self._db("repositories")) is None:
                return None
            prefix = key(repository, b"")
            tags = []
            for k, v in self._index.scan_prefix(txn, "tags", prefix, last.encode()):
                digest = lww.payload(v)
                if digest is None or not self._has_manifest(txn, repository, digest):
                    continue
                tags.append(k[len(prefix):].decode())
                if len(tags) >= (limit or MAX_LIST):
                    break
            return tags

        return self._index.read(run)

    def list_referrers(self, repository: str, subject: str) -> list[Descriptor]:
        def run(txn: lmdb.Transaction) -> list[Descriptor]:
            out = []
            manifests = self._db("repo_manifests")
            for _, v in self._index.scan_prefix(txn, "referrers", key(repository, subject, b"")):
                d = json.loads(v)
                if lww.get(txn, manifests, key(repository, d["digest"])) is None:
                    continue
                out.append(Descriptor(d["mediaType"], d["digest"], d["size"],
                                      d.get("artifactType", ""), d.get("annotations") or {}))
            return out

        return self._index.read(run)

    def list_manifests(self, repository: str) -> list[ManifestEntry]:
        validate_repository(repository)
        def run(txn: lmdb.Transaction) -> list[ManifestEntry]:
            prefix = key(repository, b"")
            tagged: dict[bytes, list[str]] = {}
            for k, v in self._index.scan_prefix(txn, "tags", prefix):
                digest = lww.payload(v)
                if digest is not None:
                    tagged.setdefault(digest, []).append(k[len(prefix):].decode())
            out = []
            for k, v in self._index.scan_prefix(txn, "repo_manifests", prefix):
                raw = lww.payload(v)
                if raw is None:
                    continue
                digest = k[len(prefix):]
                meta = json.loads(raw)
                out.append(ManifestEntry(
                    digest.decode(), meta["media_type"], lww.stamp_of(v),
                    tuple(sorted(tagged.get(digest, ()))), meta["subject"],
                    int(meta.get("size", 0))))
            return out

        return self._index.read(run)

    def repository_size(self, repository: str) -> int:
        validate_repository(repository)
        def run(txn: lmdb.Transaction) -> int:
            prefix = key(repository, b"")
            total = 0
            for _, v in self._index.scan_prefix(txn, "repo_blobs", prefix):
                link = lww.payload(v)
                if link is not None:
                    total += _LINK.unpack(link)[0]
            for _, v in self._index.scan_prefix(txn, "repo_manifests", prefix):
                meta = lww.payload(v)
                if meta is not None:
                    total += int(json.loads(meta).get("size", 0))
            return total

        return self._index.read(run)

    # -- replication: a repository's entries as they are, and merging a replica's ------------

    def export(self, repository: str) -> list[tuple[str, bytes, bytes]]:
        """Every entry of `repository`, tombstones included, as (table, key, value)."""
        def run(txn: lmdb.Transaction) -> list[tuple[str, bytes, bytes]]:
            name = repository.encode()
            if fetch(txn, name, self._db("repositories")) is None:
                return []
            out: list[tuple[str, bytes, bytes]] = [("repositories", name, b"")]
            prefix = key(repository, b"")
            for table in (*STAMPED, "referrers"):
                out.extend((table, k, v) for k, v in
                           self._index.scan_prefix(txn, table, prefix))
            digests = [k[len(prefix):] for table, k, _ in out if table == "repo_manifests"]
            for digest in digests:
                content = fetch(txn, digest, self._db("manifests"))
                if content is not None:
                    out.append(("manifests", digest, content))
            return out

        return self._index.read(run)

    def merge(self, entries: Iterable[tuple[str, bytes, bytes]]) -> int:
        """Apply a replica's entries; how many changed anything here."""
        batch = list(entries)
        for table, _, _ in batch:
            if table not in STAMPED and table not in UNION:
                raise InvalidArgument(f"no metadata table {table!r}")

        def run(txn: lmdb.Transaction) -> int:
            changed = 0
            for table, k, v in batch:
                db = self._db(table)
                if table in STAMPED:
                    self.clock.observe(lww.stamp_of(v))
                    changed += lww.put(txn, db, k, v)
                elif fetch(txn, k, db) is None:
                    txn.put(k, v, db=db)
                    changed += 1
            return changed

        return self._index.write(run)

    def repositories(self) -> list[str]:
        return self._index.read(lambda txn: [
            bytes(k).decode() for k, _ in txn.cursor(db=self._db("repositories"))])
