"""The database driver without SQLAlchemy, for the few statements on every webhook.

On this stack one statement through an `AsyncSession` costs more CPU than everything
else a WeChat answer does: on SQLite most of it is aiosqlite's hand-off to its thread
and back (2–3 per statement), on PostgreSQL SQLAlchemy's execution machinery (about
3× asyncpg's own cost). The webhook's hot statements — the de-duplication claim, the
read behind a bound member's "积分", the stored answers and `last_inbound_at` stamps —
go through this module instead; everything else keeps using sessions.

`for_engine(engine)` gives the `RawDb` of an engine (one per engine, closed when the
engine is disposed; every database has one). SQL is written once with `?` placeholders;
PostgreSQL gets them numbered (`$1`…). Values go in and come out as the driver has
them: SQLite stores dates as ISO text, datetimes as naive UTC text ('YYYY-MM-DD
HH:MM:SS.ffffff', as SQLAlchemy writes them) and money as integer cents (`models.types.Money`);
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

SQLite: `models.rawdb_sqlite` (a file database on the event loop with a plain `sqlite3`
connection, an in-memory one through the engine); PostgreSQL: `models.rawdb_pg`
(asyncpg pools of its own). `pace(raw)` bounds the deferred queue (`MAX_BACKLOG`).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util import await_only

from models.rawdb_pg import PgRaw
from models.rawdb_sqlite import EngineRaw, SqliteRaw

log = logging.getLogger("memberbot.rawdb")

MAX_BACKLOG = 2_000
"""Deferred writes queued before the writers of more wait for them (`pace`)."""


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


def compiled(statement: ClauseElement, dialect: str) -> tuple[str, tuple[str, ...]]:
    """A SQLAlchemy statement as this module's drivers run it: the text with `?`
    placeholders for `dialect` ("sqlite" or "postgresql") and the names of its
    parameters in placeholder order (a name once per use). Compiled once by the caller,
    so the statement is stated once for the session and the raw paths alike."""
    form = sqlite.dialect() if dialect == "sqlite" else postgresql.dialect(paramstyle="qmark")
    done = statement.compile(dialect=form)
    return done.string, tuple(done.positiontup or ())


# --------------------------------------------------------------------------- per engine


_BY_ENGINE: weakref.WeakKeyDictionary[Any, RawDb] = weakref.WeakKeyDictionary()


def for_engine(engine: AsyncEngine) -> RawDb:
    """The raw access of `engine`'s database."""
    sync = engine.sync_engine
    if sync in _BY_ENGINE:
        return _BY_ENGINE[sync]
    raw = _open(engine)
    _BY_ENGINE[sync] = raw
    event.listen(sync, "engine_disposed", lambda _engine: _closed(sync, raw))
    return raw


def _open(engine: AsyncEngine) -> RawDb:
    url = make_url(str(engine.url.render_as_string(hide_password=False)))
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            return EngineRaw(engine)  # no second connection can see it
        return SqliteRaw(url.database)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PgRaw(dsn)


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
