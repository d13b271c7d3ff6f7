"""`shoal pull REF DEST`: an image (every platform of an index) into an OCI image layout
folder, or an OCI archive when DEST ends in .tar.

Each blob streams to a temporary file beside its place while its SHA-256 and length are
checked, and is renamed into place only when both match: a layout never holds a blob
whose name lies. Blobs the layout already has are not downloaded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from shoal.transfer.client import Credentials, RegistryClient, RegistryError, media_type_of
from shoal.transfer.progress import Board, Tally
from shoal.transfer.reference import ImageRef
from shoal.transfer.source import INDEX_TYPES, REF_NAME, SOURCE, SourceError, sha256

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PIECE = 1 << 20


class DigestMismatch(RegistryError):
    pass


async def pull(ref: ImageRef, destination: Path, credentials: Credentials | None, *,
               jobs: int = 3, verify_tls: bool = True, quiet: bool = False,
               name: str | None = None) -> tuple[Tally, Board]:
    started = time.monotonic()
    archive = destination.suffix == ".tar"
    layout = (Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".shoal-pull-",
                                           dir=destination.parent or "."))
              if archive else destination)
    tally = Tally(str(ref))
    board = Board("pulled", quiet)
    try:
        await asyncio.to_thread(_prepare, layout)
        async with RegistryClient.open_session(verify_tls) as session:
            client = RegistryClient(ref, credentials, [f"repository:{ref.repository}:pull"],
                                    session)
            await client.check()
            limit = asyncio.Semaphore(max(1, jobs))
            with board:
                root = await _pull_manifest(client, ref.reference, layout, limit, board,
                                            tally, expected=ref.digest)
        tally.digest = root[0]
        await asyncio.to_thread(_record, layout, root, name or ref.tag or root[0],
                                f"{ref.host}/{ref.repository}")
        if archive:
            await asyncio.to_thread(_pack, layout, destination)
    finally:
        if archive:
            await asyncio.to_thread(shutil.rmtree, layout, True)
    tally.seconds = time.monotonic() - started
    return tally, board


def _prepare(layout: Path) -> None:
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    marker = layout / "oci-layout"
    if not marker.exists():
        marker.write_text('{"imageLayoutVersion":"1.0.0"}')


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not all(
            c in "0123456789abcdef" for c in hexdigest):
        raise SourceError(f"unsupported digest {digest!r} in a manifest")
    return layout / "blobs" / algorithm / hexdigest


def _present(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


async def _pull_manifest(client: RegistryClient, reference: str, layout: Path,
                         limit: asyncio.Semaphore, board: Board, tally: Tally,
                         expected: str | None = None) -> tuple[str, str, int]:
    """Pull a manifest, what it lists and its blobs; its digest, media type and size."""
    declared, data = await client.get_manifest(reference)
    digest = sha256(data)
    if expected is not None and digest != expected:
        raise DigestMismatch(f"manifest {reference} is {digest}, not {expected}")
    media_type = media_type_of(data, declared)
    try:
        document: Any = json.loads(data)
    except ValueError:
        raise RegistryError(f"manifest {reference} is not JSON") from None
    if media_type in INDEX_TYPES or "manifests" in document:
        for child in document.get("manifests", []):
            await _pull_manifest(client, child["digest"], layout, limit, board, tally,
                                 expected=child["digest"])
    else:
        descriptors = [document.get("config"), *document.get("layers", [])]
        blobs = {d["digest"]: int(d["size"]) for d in descriptors if d is not None}

        async def one(blob_digest: str, blob_size: int) -> None:
            async with limit:
                await _pull_blob(client, blob_digest, blob_size, layout, board, tally)

        tasks = [asyncio.create_task(one(d, s)) for d, s in blobs.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(_write_atomic, _blob_path(layout, digest), data)
    tally.manifests += 1
    return digest, media_type, len(data)


async def _pull_blob(client: RegistryClient, digest: str, size: int, layout: Path,
                     board: Board, tally: Tally) -> None:
    path = _blob_path(layout, digest)
    if await asyncio.to_thread(_present, path, size):
        board.skipped(digest, size, "already in the layout")
        tally.blobs_present += 1
        tally.bytes_saved += size
        return
    task = board.start(digest, size)
    hasher = hashlib.sha256()
    received = 0
    handle, temp = await asyncio.to_thread(tempfile.mkstemp, prefix=".part-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            response = await client.blob(digest)
            async with response:
                async for piece in response.content.iter_chunked(PIECE):
                    received += len(piece)
                    if received > size:
                        raise DigestMismatch(f"blob {digest} is longer than its {size} bytes")
                    # The hash and the write release the GIL, off the event loop.
                    await asyncio.to_thread(_hash_and_write, hasher, out, piece)
                    board.advance(task, len(piece))
            await asyncio.to_thread(os.fsync, out.fileno())
        if received != size or "sha256:" + hasher.hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} arrived as {received} bytes with digest "
                                 f"sha256:{hasher.hexdigest()}: refusing it")
        await asyncio.to_thread(os.replace, temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    board.done(task, "pulled")
    tally.blobs_sent += 1
    tally.bytes_sent += size


def _hash_and_write(hasher: Any, out: Any, piece: bytes) -> None:
    hasher.update(piece)
    out.write(piece)


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".part-{path.name}")
    temp.write_bytes(data)
    os.replace(temp, path)


def _record(layout: Path, root: tuple[str, str, int], name: str, source: str) -> None:
    """Name the image in index.json (replacing an image of the same name)."""
    digest, media_type, size = root
    index_path = layout / "index.json"
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if index_path.exists():
        with contextlib.suppress(ValueError):
            index = json.loads(index_path.read_bytes())
    kept = [d for d in index.get("manifests", [])
            if d.get("annotations", {}).get(REF_NAME) != name]
    kept.append({"mediaType": media_type, "digest": digest, "size": size,
                 "annotations": {REF_NAME: name, SOURCE: source}})
    index["manifests"] = kept
    _write_atomic(index_path, json.dumps(index, indent=2).encode())


def _pack(layout: Path, archive: Path) -> None:
    """The layout as an OCI archive, written beside `archive` and renamed into place."""
    temp = archive.with_name(f".part-{archive.name}")
    with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)
    os.replace(temp, archive)
