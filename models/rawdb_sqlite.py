"""The raw driver of a SQLite database (`models.rawdb`).

A file database (`SqliteRaw`): the statements run on the event loop with a plain
`sqlite3` connection — a read or a one-row write takes microseconds in WAL mode, far
less than a thread hand-off. The loop must never wait for a lock, so that connection has
no busy timeout: when the database is locked (another process or this process's
aiosqlite connection is writing), the same work is done on a worker thread with its own
connection and the usual 30 s busy timeout, and the loop awaits it. The loop connection
does not checkpoint the WAL itself (a checkpoint writes and syncs the database file); a
passive checkpoint runs on the worker thread every `CHECKPOINT_EVERY` commits.

An in-memory database (`EngineRaw`) cannot be opened a second time: the same statements
go through the engine's own connection, the writes batched the same way.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from models.group_commit import Deferred, WriteQueue, awaited_order, ordered, with_fallback

log = logging.getLogger("memberbot.rawdb")

CHECKPOINT_EVERY = 500
"""Commits of the SQLite loop connection between two passive WAL checkpoints."""
BUSY_TIMEOUT_MS = 30_000


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteRaw:
    dialect = "sqlite"

    def __init__(self, path: str):
        self._path = path
        self._loop_conn: sqlite3.Connection | None = None
        self._thread_conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rawdb-sqlite")
        self._writes: WriteQueue[Deferred, list[tuple] | None] = WriteQueue(self._write_batch)
        self._commits = 0
        self._checkpointing = False
        self.fallbacks = 0
        """Calls that found the database locked and went to the worker thread."""

    def _connect(self, *, on_loop: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=on_loop)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        if on_loop:
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        else:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    def _loop(self) -> sqlite3.Connection:
        if self._loop_conn is None:
            self._loop_conn = self._connect(on_loop=True)
        return self._loop_conn

    def _thread(self) -> sqlite3.Connection:
        if self._thread_conn is None:
            self._thread_conn = self._connect(on_loop=False)
        return self._thread_conn

    async def _run(self, work, *args):
        """`work(conn, *args)` on the loop's connection, or on the worker thread's when
        the database is locked."""
        try:
            result = work(self._loop(), *args)
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc):
                raise
            self.fallbacks += 1
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, lambda: work(self._thread(), *args))
        return result

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        return await self._run(_fetch, sql, args)

    async def write(self, sql: str, *args: Any, key: Any = None) -> list[tuple]:
        """Run a write in the next batch transaction; its rows once that is committed.
        (One commit per batch: a commit is most of a one-row write's cost.)"""
        return await self._writes.submit((sql, args, key))

    def defer(self, sql: str, args: tuple, key: Any = None) -> None:
        self._writes.add((sql, args, key))

    async def once(self, sql: str, *args: Any) -> list[tuple]:
        """One statement, committed, on a connection of its own (opened for it, on a
        thread): for a retry after the usual way failed."""

        def run() -> list[tuple]:
            conn = self._connect(on_loop=False)
            try:
                return conn.execute(sql, args).fetchall()
            finally:
                conn.close()

        return await asyncio.get_running_loop().run_in_executor(None, run)

    def backlog(self) -> int:
        return len(self._writes)

    async def settle(self) -> None:
        await self._writes.settle()

    async def _write_batch(self, items: list[Deferred], deferred: list[bool]):
        results = await with_fallback(
            lambda i, d: self._run(_write_in_transaction, i, d), items, deferred
        )
        self._committed()
        return results

    def _committed(self) -> None:
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and not self._checkpointing:
            self._checkpointing = True
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint)
            future.add_done_callback(self._checkpoint_done)

    def _checkpoint(self) -> None:
        self._thread().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _checkpoint_done(self, future: asyncio.Future) -> None:
        self._checkpointing = False
        if not future.cancelled() and future.exception() is not None:
            log.warning("WAL checkpoint failed: %s", future.exception())

    async def close(self) -> None:
        try:
            await self._writes.settle()
        finally:
            await self._writes.aclose()
            if self._loop_conn is not None:
                self._loop_conn.close()
                self._loop_conn = None
            thread_conn = self._thread_conn
            self._thread_conn = None
            if thread_conn is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, thread_conn.close)
            self._executor.shutdown(wait=False)


def _fetch(conn: sqlite3.Connection, sql: str, args: tuple) -> list[tuple]:
    return conn.execute(sql, args).fetchall()


def _write_in_transaction(
    conn: sqlite3.Connection, items: list[Deferred], deferred: list[bool]
) -> list[list[tuple] | None]:
    results: list[list[tuple] | None] = [None] * len(items)
    conn.execute("BEGIN IMMEDIATE")  # raises "locked" at once on the loop: nothing done yet
    try:
        for n in awaited_order(items, deferred):
            sql, args, _ = items[n]
            results[n] = conn.execute(sql, args).fetchall()
        for sql, rows in ordered([i for i, d in zip(items, deferred, strict=True) if d]):
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return results


class EngineRaw:
    """An in-memory SQLite database (no second connection can see it): the statements
    through the engine (`exec_driver_sql`, the same `?` placeholders), the writes in
    batch transactions as in `SqliteRaw`."""

    dialect = "sqlite"

    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        self._writes: WriteQueue[Deferred, list[tuple] | None] = WriteQueue(self._write_batch)

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        async with self._engine.begin() as conn:
            return _rows(await conn.exec_driver_sql(sql, args))

    async def write(self, sql: str, *args: Any, key: Any = None) -> list[tuple]:
        return await self._writes.submit((sql, args, key))

    def defer(self, sql: str, args: tuple, key: Any = None) -> None:
        self._writes.add((sql, args, key))

    async def once(self, sql: str, *args: Any) -> list[tuple]:
        return await self.fetch(sql, *args)  # the engine's one connection: no other

    def backlog(self) -> int:
        return len(self._writes)

    async def settle(self) -> None:
        await self._writes.settle()

    async def _write_batch(self, items: list[Deferred], deferred: list[bool]):
        return await with_fallback(self._write_in_transaction, items, deferred)

    async def _write_in_transaction(
        self, items: list[Deferred], deferred: list[bool]
    ) -> list[list[tuple] | None]:
        results: list[list[tuple] | None] = [None] * len(items)
        async with self._engine.begin() as conn:
            for n in awaited_order(items, deferred):
                sql, args, _ = items[n]
                results[n] = _rows(await conn.exec_driver_sql(sql, args))
            for sql, rows in ordered([i for i, d in zip(items, deferred, strict=True) if d]):
                await conn.exec_driver_sql(sql, rows)
        return results

    async def close(self) -> None:
        try:
            await self._writes.settle()
        finally:
            await self._writes.aclose()


def _rows(result) -> list[tuple]:
    return [tuple(r) for r in result] if result.returns_rows else []
