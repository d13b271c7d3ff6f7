"""Repository metadata: which blobs a repository may serve, its manifests, its tags and
the referrers of its manifests. This is where a tag is resolved."""

from __future__ import annotations

import json
from collections.abc import Sequence

import lmdb

from node.api import BlobInfo, Descriptor, ManifestRecord
from node.blobs import BlobStore
from node.digests import validate_digest
from node.errors import FailedPrecondition, InvalidArgument
from node.gc import reachability
from node.index import Index, fetch, key
from node.names import validate_repository, validate_tag

MAX_LIST = 10_000


def _is_digest(reference: str) -> bool:
    return ":" in reference


class Registry:
    def __init__(self, index: Index, blobs: BlobStore) -> None:
        self._index = index
        self._blobs = blobs
        self._db = index.db

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

    def link_blob(self, repository: str, digest: str) -> BlobInfo | None:
        validate_repository(repository)
        validate_digest(digest)

        def run(txn: lmdb.Transaction) -> bool:
            # Checked in the same transaction as the link, so garbage collection cannot
            # delete the blob in between and leave a link to nothing.
            if fetch(txn, digest.encode(), self._db("blobs")) is None:
                return False
            txn.put(repository.encode(), b"", db=self._db("repositories"))
            txn.put(key(repository, digest), b"", db=self._db("repo_blobs"))
            reachability.referenced(self._index, txn, [digest])
            return True

        if not self._index.write(run):
            return None
        return self._blobs.stat(digest)

    def stat_repository_blob(self, repository: str, digest: str) -> BlobInfo | None:
        linked = self._index.read(
            lambda txn: fetch(txn, key(repository, digest), self._db("repo_blobs")))
        return None if linked is None else self._blobs.stat(digest)

    def unlink_blob(self, repository: str, digest: str) -> bool:
        return self._index.write(
            lambda txn: bool(txn.delete(key(repository, digest), db=self._db("repo_blobs"))))

    # -- manifests and tags ------------------------------------------------------------------

    def put_manifest(self, repository: str, manifest: ManifestRecord, tags: Sequence[str],
                     references: Sequence[str]) -> None:
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

        def run(txn: lmdb.Transaction) -> None:
            for ref in references:
                if (fetch(txn, key(repository, ref), self._db("repo_blobs")) is None
                        and fetch(txn, key(repository, ref), self._db("repo_manifests")) is None):
                    raise FailedPrecondition(f"{ref} is not in repository {repository}")
            reachability.referenced(self._index, txn, references)
            txn.put(repository.encode(), b"", db=self._db("repositories"))
            txn.put(manifest.digest.encode(), manifest.content, db=self._db("manifests"))
            txn.put(key(repository, manifest.digest), meta, db=self._db("repo_manifests"))
            for tag in tags:
                txn.put(key(repository, tag), manifest.digest.encode(), db=self._db("tags"))
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
            found = fetch(txn, key(repository, reference), self._db("repo_manifests"))
            return reference if found is not None else None
        digest = fetch(txn, key(repository, reference), self._db("tags"))
        return digest.decode() if digest is not None else None

    def get_manifest(self, repository: str, reference: str) -> ManifestRecord | None:
        def run(txn: lmdb.Transaction) -> ManifestRecord | None:
            digest = self.resolve(txn, repository, reference)
            if digest is None:
                return None
            meta_raw = fetch(txn, key(repository, digest), self._db("repo_manifests"))
            content = fetch(txn, digest.encode(), self._db("manifests"))
            if meta_raw is None or content is None:
                return None
            meta = json.loads(meta_raw)
            return ManifestRecord(digest, meta["media_type"], content, meta["subject"],
                                  meta["artifact_type"], meta["annotations"])

        return self._index.read(run)

    def delete_manifest(self, repository: str, digest: str) -> bool:
        if not _is_digest(digest):
            raise InvalidArgument("manifests are deleted by digest")

        def run(txn: lmdb.Transaction) -> bool:
            meta_raw = fetch(txn, key(repository, digest), self._db("repo_manifests"))
            if meta_raw is None:
                return False
            meta = json.loads(meta_raw)
            txn.delete(key(repository, digest), db=self._db("repo_manifests"))
            stale = [k for k, v in self._index.scan_prefix(txn, "tags", key(repository, b""))
                     if v == digest.encode()]
            for k in stale:
                txn.delete(k, db=self._db("tags"))
            if meta["subject"]:
                txn.delete(key(repository, meta["subject"], digest), db=self._db("referrers"))
            return True

        return self._index.write(run)

    def delete_tag(self, repository: str, tag: str) -> bool:
        return self._index.write(
            lambda txn: bool(txn.delete(key(repository, tag), db=self._db("tags"))))

    def list_tags(self, repository: str, last: str, limit: int) -> list[str] | None:
        def run(txn: lmdb.Transaction) -> list[str] | None:
            if fetch(txn, repository.encode(), self._db("repositories")) is None:
                return None
            prefix = key(repository, b"")
            tags = []
            for k, _ in self._index.scan_prefix(txn, "tags", prefix, last.encode()):
                tags.append(k[len(prefix):].decode())
                if len(tags) >= (limit or MAX_LIST):
                    break
            return tags

        return self._index.read(run)

    def list_referrers(self, repository: str, subject: str) -> list[Descriptor]:
        def run(txn: lmdb.Transaction) -> list[Descriptor]:
            out = []
            for _, v in self._index.scan_prefix(txn, "referrers", key(repository, subject, b"")):
                d = json.loads(v)
                out.append(Descriptor(d["mediaType"], d["digest"], d["size"],
                                      d.get("artifactType", ""), d.get("annotations") or {}))
            return out

        return self._index.read(run)
