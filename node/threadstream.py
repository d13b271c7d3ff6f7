"""Running a blocking generator in its own thread as a bounded async stream.

A long read (a multi-GiB layer) must not occupy a worker of the shared thread pool, or a
few slow pulls would starve every metadata call; it gets a thread of its own instead, and
at most `depth` items exist besides the one the consumer holds, so a slow client holds a
few MiB, not a layer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


async def stream_in_thread(make: Callable[[], Iterator[T]], depth: int = 4) -> AsyncIterator[T]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    room = threading.Semaphore(depth)
    stop = threading.Event()

    def deliver(item: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            items = make()
            while True:
                # Room first, then the next item: waiting with an item already made would
                # hold one more piece than `depth` for as long as the consumer is slow.
                room.acquire()
                if stop.is_set():
                    return
                item = next(items, _DONE)
                if item is _DONE:
                    break
                deliver(item)
            deliver(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            if not stop.is_set():
                deliver(exc)

    thread = threading.Thread(target=run, name="shoal-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            room.release()
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        room.release()  # wake the producer if it waits for room, so it sees `stop`
