"""`shoal push SOURCE REF`: blobs first (each skipped when the registry has it, mounted
when it holds it in the repository the image came from), then child manifests by digest,
then the manifest under its tag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from shoal.transfer.client import Credentials, RegistryClient, Watchdog
from shoal.transfer.progress import Board, Tally
from shoal.transfer.reference import ImageRef
from shoal.transfer.source import BlobFile, Manifest, open_image


async def push(source: str, ref: ImageRef, credentials: Credentials | None, *,
               mount_from: str | None = None, jobs: int = 3, verify_tls: bool = True,
               quiet: bool = False) -> tuple[Tally, Board]:
    started = time.monotonic()
    image = await asyncio.to_thread(open_image, source)
    origin = mount_from or _same_registry(image.source, ref)
    scopes = [f"repository:{ref.repository}:pull,push"]
    if origin:
        scopes.append(f"repository:{origin}:pull")
    tally = Tally(str(ref))
    board = Board("pushed", quiet)
    async with RegistryClient.open_session(verify_tls) as session:
        client = RegistryClient(ref, credentials, scopes, session)
        await client.check()
        limit = asyncio.Semaphore(max(1, jobs))

        async def one(blob: BlobFile) -> None:
            async with limit:
                await _push_blob(client, blob, origin, board, tally)

        with board:
            tasks = [asyncio.create_task(one(b)) for b in image.manifest.all_blobs()]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        tally.digest = await _put_tree(client, image.manifest, ref.reference, tally)
    tally.seconds = time.monotonic() - started
    return tally, board


def _same_registry(source: str | None, ref: ImageRef) -> str | None:
    """The repository to mount from, when the image was pulled from this registry."""
    if not source:
        return None
    host, _, repository = source.partition("/")
    return repository if host == ref.host and repository != ref.repository else None


async def _push_blob(client: RegistryClient, blob: BlobFile, origin: str | None,
                     board: Board, tally: Tally) -> None:
    if await client.has_blob(blob.digest):
        board.skipped(blob.digest, blob.size, "already present")
        tally.blobs_present += 1
        tally.bytes_saved += blob.size
        return
    if origin and await client.mount_blob(blob.digest, origin):
        board.skipped(blob.digest, blob.size, f"mounted from {origin}")
        tally.blobs_mounted += 1
        tally.bytes_saved += blob.size
        return
    task = board.start(blob.digest, blob.size)
    watchdog = Watchdog()

    async def body() -> AsyncIterator[bytes]:
        board.progress.reset(task, total=blob.size)   # a retry after signing in starts over
        async for piece in blob.read():
            board.advance(task, len(piece))
            watchdog.moved()
            yield piece

    await watchdog.guard(client.upload_blob(blob.digest, blob.size, body),
                         f"uploading blob {blob.digest[:19]}")
    board.done(task, "pushed")
    tally.blobs_sent += 1
    tally.bytes_sent += blob.size


async def _put_tree(client: RegistryClient, manifest: Manifest, reference: str,
                    tally: Tally) -> str:
    """Put `manifest` under `reference` after the manifests it lists, by digest."""
    for child in manifest.children:
        await _put_tree(client, child, child.digest, tally)
    answered = await client.put_manifest(reference, manifest.media_type, manifest.data)
    tally.manifests += 1
    return answered or manifest.digest
