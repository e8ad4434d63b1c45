"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
`BEGIN IMMEDIATE`, so two writers queue instead of failing half-way with
"database is locked". PostgreSQL runs at READ COMMITTED; points-changing code
locks the member row first (a conditional UPDATE), which serialises changes to
one member without serialising the whole database.

Pools (`make_engine`):

- SQLite file: one connection per engine (`pool_size=1, max_overflow=0`). Every
  transaction takes the database's write lock at BEGIN, so a second connection could
  never run a transaction at the same time anyway; it would only wait in SQLite's busy
  handler, which sleeps and polls (seconds of tail latency under load), where the pool
  queues waiters in order. The same holds for code that needs a second connection
  while it holds one (there is none: `bot.inbound_log` and the conversation take turns,
  never nest): with SQLite it would wait for itself either way. A pool wait longer than
  the pool's timeout (30 s, like the busy timeout) raises instead of hanging.
  No reset (ROLLBACK) when a connection goes back to the pool: SQLAlchemy has already
  committed or rolled back every transaction it began (and the driver is in autocommit
  mode, so there is no transaction it did not begin); the reset was one more trip to
  aiosqlite's thread per transaction, for nothing.
- PostgreSQL: `pool_size` connections (default 10) and no overflow. Overflow
  connections are closed as soon as the pool has enough idle ones again, so under a
  bursty load they were opened and closed all the time — each time a TCP connect, an
  SSL probe and an empty prepared-statement cache (about a quarter of a chat answer's
  samples in a profile). One process is bound by its CPU long before ten transactions at a time;
  more requests wait for a connection in order (up to the 30 s pool timeout). No
  `pool_pre_ping`: it costs a round trip on every checkout. `pool_recycle` (1 hour)
  replaces connections before a server or firewall idle timeout can cut them; a
  connection broken anyway (a database restart) fails the one request that meets it,
  SQLAlchemy then discards the pool's other old connections, and the platform's retry
  (WeChat, Twilio) is served on a fresh one.
- PostgreSQL through PgBouncer in transaction pooling (`pgbouncer=True`,
  `database.pgbouncer`): consecutive transactions of one connection may run on
  different server connections, so nothing may outlive a transaction. The driver keeps
  no prepared-statement cache and prepares every statement unnamed, inside its
  transaction (asyncpg re-sends it with the execution), so no statement is left behind
  on a server connection; `models.rawdb` drops its startup parameters the same way
  (`behind_pgbouncer`).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 7_364_001  # pg_advisory_xact_lock key: one replica migrates at a time
_POOLED: weakref.WeakSet = weakref.WeakSet()
"""The (sync) engines made with `pgbouncer=True`."""
PGBOUNCER_CONNECT_ARGS = {
    "statement_cache_size": 0,  # asyncpg's own cache
    "prepared_statement_cache_size": 0,  # SQLAlchemy's
    # "" = asyncpg's unnamed statement: replaced by the next one, never left on the
    # server connection (a name per statement would pile up on PgBouncer's servers)
    "prepared_statement_name_func": lambda: "",
}


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, pgbouncer: bool = False
) -> AsyncEngine:
    """The engine for `url`; `pool_size` applies to PostgreSQL (SQLite: one connection);
    `pgbouncer`: PostgreSQL reached through PgBouncer in transaction pooling."""
    if url.startswith("sqlite"):
        pool = (
            {}
            if _sqlite_in_memory(url)
            else {"pool_size": 1, "max_overflow": 0, "pool_reset_on_return": None}
        )
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=3600,
        connect_args=PGBOUNCER_CONNECT_ARGS if pgbouncer else {},
    )
    if pgbouncer:
        _POOLED.add(engine.sync_engine)
    return engine


def behind_pgbouncer(engine: AsyncEngine) -> bool:
    """Whether `engine` was made for PgBouncer's transaction pooling."""
    return engine.sync_engine in _POOLED


def _sqlite_in_memory(url: str) -> bool:
    """An in-memory database (SQLAlchemy gives it its own single-connection pool)."""
    parsed = make_url(url)
    return parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any exception."""
    async with factory() as session, session.begin():
        yield session


def is_postgres(engine_or_session) -> bool:
    bind = getattr(engine_or_session, "bind", None) or engine_or_session
    return bind.dialect.name == "postgresql"


def insert_ignore(dialect_name: str, table):
    """INSERT … ON CONFLICT DO NOTHING for either engine (use `.values(...)` on the result)."""
    mod = postgresql if dialect_name == "postgresql" else sqlite
    return mod.insert(table)


def alembic_config(connection):
    from alembic.config import Config  # start-up time: alembic loads only to migrate

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection) -> None:
    from alembic import command  # start-up time, as above

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (safe to call from several replicas).

    SQLite: a revision that changes a column rebuilds its table (Alembic's batch mode:
    copy, drop, rename), and dropping a table other tables refer to fails while foreign
    keys are enforced — a pragma that only changes outside a transaction. So the
    migrations run with them off, and `PRAGMA foreign_key_check` must find nothing
    before they are on again (else the migration is refused, nothing committed)."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
        return
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute("PRAGMA foreign_keys=OFF")
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade)
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migration left broken references: {broken[:5]}")
        finally:
            await driver.execute("PRAGMA foreign_keys=ON")


async def ping(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return True
