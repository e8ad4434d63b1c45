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
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("memberbot.group_commit")

T = TypeVar("T")
R = TypeVar("R")


class GroupWriter(Generic[T, R]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]]):
        """`flush(items)` writes the items in one transaction and returns one result each.
        If a batch of several items is refused by the database (`refused`: a value too
        long, a broken constraint), each item is flushed again alone, so one bad item
        fails only its own caller. Other failures (a lost connection) fail the batch."""
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
                    if len(batch) == 1 or not refused(exc):
                        for _, future in batch:
                            _fail(future, exc)
                    else:
                        log.warning("a batch of %d failed (%s); one by one", len(batch), exc)
                        await self._one_by_one(batch)
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

    async def _one_by_one(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        for item, future in batch:
            if future.done():
                continue
            try:
                [result] = await self._flush([item])
            except Exception as exc:
                _fail(future, exc)
            else:
                if not future.done():
                    future.set_result(result)


def refused(exc: BaseException) -> bool:
    """Whether the database refused the data (SQLSTATE class 22 "data exception" or 23
    "integrity constraint violation"; SQLite's IntegrityError), not the connection. Looks
    through SQLAlchemy's and asyncpg's wrappers."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state[:2] in ("22", "23"):
            return True
        if isinstance(seen, sqlite3.IntegrityError | sqlite3.DataError):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class WriteQueue(Generic[T, R]):
    """Like `GroupWriter`, and also for writes that need not be committed before the
    caller goes on (write-behind).

    `submit(item)` waits until the batch with the item is committed and returns its
    result; `add(item)` queues an item and returns at once. Both go into the same
    batches: `flush(items, deferred)` writes everything queued since the last flush in
    one transaction (one flush at a time, items in the order they came; `deferred[i]`
    tells which were added) and returns one result per item. A failed flush fails its
    submitted items and is logged; its added items are dropped, never retried out of
    order. `settle()` waits until every item queued before it is committed and raises
    if that failed; `aclose()` waits for the queue to drain.
    """

    def __init__(self, flush: Callable[[list[T], list[bool]], Awaitable[list[R]]]):
        self._flush = flush
        self._queue: list[tuple[T, asyncio.Future[R] | None]] = []
        self._queued: asyncio.Future[None] | None = None
        """Resolved when the queued items are committed (created by `settle`)."""
        self._flushing: asyncio.Future[None] | None = None
        self._running: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, item: T) -> None:
        self._queue.append((item, None))
        self._start()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start()
        return await future

    async def settle(self) -> None:
        last = self._batch_future() if self._queue else self._flushing
        if last is not None:
            await asyncio.shield(last)

    async def aclose(self) -> None:
        if self._running is not None:
            await asyncio.gather(asyncio.shield(self._running), return_exceptions=True)

    def _start(self) -> None:
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())

    def _batch_future(self) -> asyncio.Future[None]:
        if self._queued is None:
            self._queued = asyncio.get_running_loop().create_future()
            self._queued.add_done_callback(_consume)
        return self._queued

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R] | None]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                done, self._queued = self._queued, None
                self._flushing = done = done or asyncio.get_running_loop().create_future()
                try:
                    results = await self._flush(
                        [item for item, _ in batch], [f is None for _, f in batch]
                    )
                except Exception as exc:
                    log.exception("a batch of %d writes failed", len(batch))
                    for _, future in batch:
                        if future is not None and not future.done():
                            future.set_exception(exc)
                    if not done.done():
                        done.set_exception(exc)
                        _consume(done)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if future is not None and not future.done():
                            future.set_result(result)
                    if not done.done():
                        done.set_result(None)
                finally:
                    self._flushing = None
                batch = []
        except BaseException:  # cancelled (shutdown): nobody may wait forever
            for _, future in [*batch, *self._queue]:
                if future is not None and not future.done():
                    future.cancel()
            for waiter in (self._queued, self._flushing):
                if waiter is not None and not waiter.done():
                    waiter.cancel()
            self._queue, self._queued = [], None
            raise
        finally:
            self._running = None


def _consume(future: asyncio.Future) -> None:
    """Mark a batch's failure as seen (it is logged; `settle` re-raises it to waiters)."""
    if not future.cancelled():
        future.exception()


# --------------------------------------------------------------------------- batches of statements
# A batch of `models.rawdb` writes: (sql, args, key) items, the submitted ones (a caller
# waits for their rows) and the deferred ones, run in one go in a fixed order.

Deferred = tuple[str, tuple, Any]
"""(sql, args, key) of one write."""


def ordered(items: list[Deferred]) -> list[tuple[str, list[tuple]]]:
    """Deferred writes as (sql, rows) groups in a fixed order: by SQL, then by key."""
    groups: dict[str, list[tuple[Any, int, tuple]]] = {}
    for n, (sql, args, key) in enumerate(items):
        groups.setdefault(sql, []).append((key, n, args))
    return [
        (sql, [args for _, _, args in sorted(rows, key=sort_key)])
        for sql, rows in sorted(groups.items())
    ]


def sort_key(row: tuple[Any, int, tuple]) -> tuple:
    key, n, _ = row
    return (key is None, key if key is not None else 0, n)


def awaited_order(items: list[Deferred], deferred: list[bool]) -> list[int]:
    """The submitted (not deferred) items' positions, by SQL and key like `ordered`."""
    positions = [n for n, d in enumerate(deferred) if not d]
    return sorted(positions, key=lambda n: (items[n][0], *sort_key((items[n][2], n, ()))))


async def with_fallback(write, items: list[Deferred], deferred: list[bool]) -> list:
    """`write(items, deferred)`; if the batch fails and had deferred writes, they are
    dropped (logged) and the submitted ones tried again alone, so a bad deferred write
    never fails a request."""
    try:
        return await write(items, deferred)
    except Exception:
        if all(deferred) or not any(deferred):
            raise
        log.exception("a batch with %d deferred writes failed; they are dropped", sum(deferred))
    keep = [n for n, d in enumerate(deferred) if not d]
    again = await write([items[n] for n in keep], [False] * len(keep))
    results: list = [None] * len(items)
    for n, result in zip(keep, again, strict=True):
        results[n] = result
    return results
