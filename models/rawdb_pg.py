"""The raw driver of a PostgreSQL database (`models.rawdb`): asyncpg.

A small asyncpg pool of its own (`RAW_POOL_SIZE` connections, no reset query on
release: every statement here is one autocommit statement, so a connection never goes
back with state on it); asyncpg prepares and caches each statement per connection.
Deferred writes go through one more connection of their own, without synchronous
commit and with custom plans (see `PgRaw._write_batch`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from models.group_commit import Deferred, WriteQueue, ordered, refused

log = logging.getLogger("memberbot.rawdb")

RAW_POOL_SIZE = 8
"""asyncpg connections of the raw path (besides the engine's own pool)."""


_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """`?` placeholders → `$1`, `$2`, … (the SQL here has no `?` in literals)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


MAIN_SETTINGS = {"enable_seqscan": "off"}
"""The raw pool's statements are all lookups by a unique key or the member's id, run
thousands of times a second as cached generic plans. A plan made while a table looked
empty (a fresh install, a just-pruned `inbound_messages`) would be a sequential scan —
and stay one, for every message, as the table grows, until autovacuum next analyses it.
Seen in the benchmark: 290–660 µs of PostgreSQL CPU per "积分" instead of ~45 (with the
key lookup of `bot.quick.POSTGRESQL` written as `= ANY(keys)`). With sequential scans
priced out, these statements always take their indexes."""


async def _no_reset(conn) -> None:
    """Release without asyncpg's reset query: nothing here leaves session state behind."""


class PgRaw:
    dialect = "postgresql"

    def __init__(self, dsn: str):
        self._dsn = dsn
        self._pools: dict[str, asyncio.Future] = {}
        self._pool = None
        self._sql: dict[str, str] = {}
        self._writes: WriteQueue[Deferred, None] = WriteQueue(self._write_batch)

    def _text(self, sql: str) -> str:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = numbered(sql)
        return text

    async def _open(self, name: str, **options):
        """The pool `name`, opened on first use (concurrent first users share the opening)."""
        opening = self._pools.get(name)
        if opening is None:
            import asyncpg

            opening = self._pools[name] = asyncio.ensure_future(
                asyncpg.create_pool(self._dsn, min_size=1, reset=_no_reset, **options)
            )
        return await asyncio.shield(opening)

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        pool = self._pool or await self._open(
            "main", max_size=RAW_POOL_SIZE, server_settings=MAIN_SETTINGS
        )
        self._pool = pool
        async with pool.acquire() as conn:
            return [tuple(r) for r in await conn.fetch(self._text(sql), *args)]

    async def write(self, sql: str, *args: Any, key: Any = None) -> list[tuple]:
        """A write committed on its own (PostgreSQL commits concurrent transactions in
        parallel; a batch would serialise them on one connection, a round trip each)."""
        return await self.fetch(sql, *args)

    def defer(self, sql: str, args: tuple, key: Any = None) -> None:
        self._writes.add((sql, args, key))

    async def once(self, sql: str, *args: Any) -> list[tuple]:
        """One statement on a connection of its own, opened for it and closed after:
        for a retry after a pooled connection failed (lost, or "another operation is
        in progress")."""
        import asyncpg

        conn = await asyncpg.connect(self._dsn)
        try:
            return [tuple(r) for r in await conn.fetch(self._text(sql), *args)]
        finally:
            await conn.close()

    def backlog(self) -> int:
        return len(self._writes)

    async def settle(self) -> None:
        await self._writes.settle()

    async def _write_batch(self, items: list[Deferred], deferred: list[bool]) -> list[None]:
        # Deferred writes have their own connection, whose commits do not wait for the WAL
        # to reach the disk (`synchronous_commit = off`): they are written behind the
        # answer already, and a crash of the server loses at most the last fraction of a
        # second of them — what SQLite's `synchronous = NORMAL` allows for every commit.
        # Under a slow disk they then never hold the reply path's connections. Their
        # statements are one-row UPDATEs by key, planned for every row (cheap for them):
        # a generic plan made while a table was still empty (a fresh install, a pruned
        # log) would scan the whole table for every row until autovacuum next analyses it.
        pool = await self._open(
            "deferred",
            max_size=1,
            server_settings={"synchronous_commit": "off", "plan_cache_mode": "force_custom_plan"},
        )
        async with pool.acquire() as conn:
            for sql, rows in ordered(items):
                # One pipelined round trip per statement, atomic on its own (asyncpg
                # wraps executemany in an implicit transaction).
                try:
                    await conn.executemany(self._text(sql), rows)
                except Exception as exc:
                    if len(rows) == 1 or not refused(exc):
                        raise
                    await _row_by_row(conn, self._text(sql), rows, exc)
        return [None] * len(items)

    async def close(self) -> None:
        try:
            await self._writes.settle()
        finally:
            await self._writes.aclose()
            pools, self._pools, self._pool = self._pools, {}, None
            for opening in pools.values():
                pool = await opening
                await pool.close()


async def _row_by_row(conn, sql: str, rows: list[tuple], exc: Exception) -> None:
    """The rows of a refused batch again one by one: only the bad ones are dropped
    (logged), never their neighbours (they are deferred writes: nobody waits for them)."""
    log.warning("a batch of %d writes was refused (%s); row by row", len(rows), exc)
    for row in rows:
        try:
            await conn.execute(sql, *row)
        except Exception as row_exc:
            if not refused(row_exc):
                raise
            log.error("a deferred write was refused and dropped: %s", row_exc)
