"""Group commit: many small writes from concurrent requests share one transaction.

A webhook writes two tiny rows per message (the claim and the stored answer, see
`bot.inbound_log`). Each on its own costs a whole transaction — on this stack several
driver round trips and most of a millisecond of CPU — which under load dwarfs the
message's real work. `GroupWriter` queues the writes and runs them with one call of
`flush(items)`: whatever arrives while a flush is under way goes into the next one.
There is no timer: an idle writer flushes a lone item at once, a busy one in batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupWriter(Generic[T, R]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]]):
        """`flush(items)` writes the items in one transaction and returns one result each."""
        self._flush = flush
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task | None = None

    async def submit(self, item: T) -> R:
        """Queue `item`; return its result once the batch it went in is committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        return await future

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
                batch = []
        except BaseException:  # cancelled (shutdown): nobody may wait forever
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.cancel()
            self._queue = []
            raise
        finally:
            self._running = None
