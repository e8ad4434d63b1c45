"""The database driver without SQLAlchemy, for the few statements on every webhook.

On this stack one statement through an `AsyncSession` costs more CPU than everything
else a WeChat answer does: on SQLite most of it is aiosqlite's hand-off to its thread
and back (2–3 per statement), on PostgreSQL SQLAlchemy's execution machinery (about
3× asyncpg's own cost). The webhook's hot statements — the de-duplication claim, the
read behind a bound member's "积分", the stored answers and `last_inbound_at` stamps —
go through this module instead; everything else keeps using sessions.

`for_engine(engine)` gives the `RawDb` of an engine (one per engine, closed when the
engine is disposed). SQL is written once with `?` placeholders; PostgreSQL gets them
numbered (`$1`…). Values go in and come out as the driver has them: SQLite stores
dates as ISO text, datetimes as naive UTC text ('YYYY-MM-DD HH:MM:SS.ffffff', as
SQLAlchemy writes them) and money as integer cents (`models.types.Money`);
`sql_time`/`read_time`/`read_date` convert.

- `fetch(sql, *args)` runs one read in its own transaction (autocommit) and returns
  its rows as tuples.
- `write(sql, *args, key=…)` runs a write (e.g. `INSERT … RETURNING`) and returns
  its rows once it is committed. SQLite: in the next batch transaction, with the other
  writes queued meanwhile (a commit is most of a one-row write's cost); PostgreSQL:
  on its own (the server commits concurrent transactions in parallel).
- `defer(sql, args, key)`: a write that need not be durable before the answer goes
  out (a stored answer, a stamp). Deferred writes are committed in batches
  (`models.group_commit.WriteQueue`; SQLite: one transaction per batch, with the
  `write`s queued meanwhile; PostgreSQL: one pipelined `executemany` per statement),
  grouped and ordered by SQL text and `key` (two processes never lock rows in
  opposite orders); `settle()` waits until everything deferred so far is committed.
- `once(sql, *args)`: one statement on a connection opened for it alone — a retry
  that must not meet the pooled connection that just failed.

SQLite (file databases only; `for_engine` returns None for an in-memory one): the
statements run on the event loop with a plain `sqlite3` connection — a read or a
one-row write takes microseconds in WAL mode, far less than a thread hand-off. The
loop must never wait for a lock, so that connection has no busy timeout: when the
database is locked (another process or this process's aiosqlite connection is
writing), the same work is done on a worker thread with its own connection and the
usual 30 s busy timeout, and the loop awaits it. The loop connection does not
checkpoint the WAL itself (a checkpoint writes and syncs the database file); a
passive checkpoint runs on the worker thread every `CHECKPOINT_EVERY` commits.

PostgreSQL: a small asyncpg pool of its own (`RAW_POOL_SIZE` connections, no reset
query on release: every statement here is one autocommit statement, so a connection
never goes back with state on it); asyncpg prepares and caches each statement per
connection. Deferred writes go through one more connection of their own, without
synchronous commit and with custom plans (see `PgRaw._write_batch`). `pace(raw)`
bounds the deferred queue (`MAX_BACKLOG`).

Behind PgBouncer in transaction pooling (`models.db.behind_pgbouncer`) a connection is
only the server's for one transaction: no statement cache (asyncpg then sends each
statement unnamed with its execution, planned for its values: no cached generic plan to
go stale, so no `enable_seqscan`), no startup parameters (PgBouncer refuses them), and
the deferred writes set `synchronous_commit` per transaction (`SET LOCAL`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from models.db import behind_pgbouncer
from models.group_commit import WriteQueue, refused

log = logging.getLogger("memberbot.rawdb")

RAW_POOL_SIZE = 8
"""asyncpg connections of the raw path (besides the engine's own pool)."""
CHECKPOINT_EVERY = 500
"""Commits of the SQLite loop connection between two passive WAL checkpoints."""
BUSY_TIMEOUT_MS = 30_000
MAX_BACKLOG = 2_000
"""Deferred writes queued before the writers of more wait for them (`pace`)."""

Deferred = tuple[str, tuple, Any]
"""(sql, args, key) of one deferred write."""


class RawDb(Protocol):
    dialect: str

    async def fetch(self, sql: str, *args: Any) -> list[tuple]: ...

    async def write(self, sql: str, *args: Any, key: Any = None) -> list[tuple]: ...

    def defer(self, sql: str, args: tuple, key: Any = None) -> None: ...

    async def once(self, sql: str, *args: Any) -> list[tuple]: ...

    def backlog(self) -> int: ...

    async def settle(self) -> None: ...

    async def close(self) -> None: ...


def sql_time(value: datetime, dialect: str) -> datetime | str:
    """A timezone-aware datetime as the driver stores it (SQLite: naive UTC text)."""
    if dialect == "sqlite":
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        # "YYYY-MM-DD HH:MM:SS.ffffff" + "+00:00": the offset cut off (cheaper than a
        # naive copy of the datetime, made three times per message)
        return value.isoformat(" ", "microseconds")[:26]
    return value


def read_time(value: datetime | str | None) -> datetime | None:
    """A stored datetime back as an aware UTC datetime (SQLite gives text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_date(value: date | str | None) -> date | None:
    if isinstance(value, str):
        return date.fromisoformat(value)
    return value


def sql_date(value: date, dialect: str) -> date | str:
    return value.isoformat() if dialect == "sqlite" else value


def _ordered(items: list[Deferred]) -> list[tuple[str, list[tuple]]]:
    """Deferred writes as (sql, rows) groups in a fixed order: by SQL, then by key."""
    groups: dict[str, list[tuple[Any, int, tuple]]] = {}
    for n, (sql, args, key) in enumerate(items):
        groups.setdefault(sql, []).append((key, n, args))
    return [
        (sql, [args for _, _, args in sorted(rows, key=_sort_key)])
        for sql, rows in sorted(groups.items())
    ]


def _sort_key(row: tuple[Any, int, tuple]) -> tuple:
    key, n, _ = row
    return (key is None, key if key is not None else 0, n)


# --------------------------------------------------------------------------- SQLite


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
        results = await _with_fallback(
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
        for n in _awaited_order(items, deferred):
            sql, args, _ = items[n]
            results[n] = conn.execute(sql, args).fetchall()
        for sql, rows in _ordered([i for i, d in zip(items, deferred, strict=True) if d]):
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return results


def _awaited_order(items: list[Deferred], deferred: list[bool]) -> list[int]:
    """The submitted (not deferred) items' positions, by SQL and key like `_ordered`."""
    positions = [n for n, d in enumerate(deferred) if not d]
    return sorted(positions, key=lambda n: (items[n][0], *_sort_key((items[n][2], n, ()))))


async def _with_fallback(write, items: list[Deferred], deferred: list[bool]) -> list:
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


# --------------------------------------------------------------------------- PostgreSQL


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

    def __init__(self, dsn: str, *, pgbouncer: bool = False):
        self._dsn = dsn
        self._pgbouncer = pgbouncer
        self._connect_options = {"statement_cache_size": 0} if pgbouncer else {}
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

            if self._pgbouncer:
                options.pop("server_settings", None)
            options.update(self._connect_options)
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

        conn = await asyncpg.connect(self._dsn, **self._connect_options)
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
            for sql, rows in _ordered(items):
                # One pipelined round trip per statement, atomic on its own (asyncpg
                # wraps executemany in an implicit transaction).
                try:
                    await self._many(conn, self._text(sql), rows)
                except Exception as exc:
                    if len(rows) == 1 or not refused(exc):
                        raise
                    await _row_by_row(self._many, conn, self._text(sql), rows, exc)
        return [None] * len(items)

    async def _many(self, conn, sql: str, rows: list[tuple]) -> None:
        if not self._pgbouncer:
            await conn.executemany(sql, rows)
            return
        async with conn.transaction():  # the startup parameter's place behind PgBouncer
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.executemany(sql, rows)

    async def close(self) -> None:
        try:
            await self._writes.settle()
        finally:
            await self._writes.aclose()
            pools, self._pools, self._pool = self._pools, {}, None
            for opening in pools.values():
                pool = await opening
                await pool.close()


async def _row_by_row(many, conn, sql: str, rows: list[tuple], exc: Exception) -> None:
    """The rows of a refused batch again one by one: only the bad ones are dropped
    (logged), never their neighbours (they are deferred writes: nobody waits for them)."""
    log.warning("a batch of %d writes was refused (%s); row by row", len(rows), exc)
    for row in rows:
        try:
            await many(conn, sql, [row])
        except Exception as row_exc:
            if not refused(row_exc):
                raise
            log.error("a deferred write was refused and dropped: %s", row_exc)


# --------------------------------------------------------------------------- per engine


_BY_ENGINE: weakref.WeakKeyDictionary[Any, RawDb | None] = weakref.WeakKeyDictionary()


def for_engine(engine: AsyncEngine) -> RawDb | None:
    """The raw access of `engine`'s database; None for an in-memory SQLite database (no
    second connection can see it: callers then keep to sessions)."""
    sync = engine.sync_engine
    if sync in _BY_ENGINE:
        return _BY_ENGINE[sync]
    raw = _open(engine)
    _BY_ENGINE[sync] = raw
    if raw is not None:
        event.listen(sync, "engine_disposed", lambda _engine: _closed(sync, raw))
    return raw


def _open(engine: AsyncEngine) -> RawDb | None:
    url = make_url(str(engine.url.render_as_string(hide_password=False)))
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            return None
        return SqliteRaw(url.database)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PgRaw(dsn, pgbouncer=behind_pgbouncer(engine))


def _closed(sync_engine, raw: RawDb) -> None:
    """`engine.dispose()` closes the raw access too (the listener runs inside
    SQLAlchemy's greenlet, so it can await)."""
    _BY_ENGINE.pop(sync_engine, None)
    try:
        await_only(raw.close())
    except Exception:
        log.exception("closing the raw database access failed")


async def pace(raw: RawDb) -> None:
    """Wait for the deferred writes when more than `MAX_BACKLOG` are queued: a database
    that cannot keep up (a stalled disk) slows the replies down instead of letting the
    queue — and what a crash would lose — grow without bound."""
    if raw.backlog() > MAX_BACKLOG:
        with contextlib.suppress(Exception):  # a failed batch is logged where it failed
            await raw.settle()


async def fetch_one(raw: RawDb, sql: str, *args: Any) -> tuple | None:
    rows: Sequence[tuple] = await raw.fetch(sql, *args)
    return rows[0] if rows else None
