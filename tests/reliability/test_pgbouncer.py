"""The app's pools through PgBouncer in transaction pooling (deploy/pgbouncer.ini),
with one server connection so that every transaction of every client meets the same
one: with `database.pgbouncer = true` the engine's sessions, the webhook's raw pool and
its deferred writes all work, and no prepared statement is left on the server
connection; without it the raw pool's startup parameters are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, text
from sqlmodel import select

from models import rawdb
from models.db import make_engine, migrate, session_factory, transaction
from models.tables.members import Store
from tests.reliability.stack import Stack

STORE = "INSERT INTO stores (code, name, city, phone, created_at) VALUES (?, ?, '', '', now())"


@pytest.fixture
def bouncer(tmp_path: Path, deploy_db: tuple[str, str]):
    admin_url, dbname = deploy_db
    stack = Stack(
        tmp_path, pg_admin_url=admin_url, dbname=dbname, bouncer={"default_pool_size": "1"}
    )
    with stack:
        stack.start_pgbouncer()
        yield stack


async def _prepared(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM pg_prepared_statements"))).scalar()


async def test_every_pool_works_through_transaction_pooling(bouncer: Stack):
    engine = make_engine(bouncer.database_url, pgbouncer=True)
    try:
        await migrate(engine)
        raw = rawdb.for_engine(engine)
        # the raw path's reads and writes, many at once over one server connection
        sums = await asyncio.gather(*(raw.fetch("SELECT ?::int + 1", i) for i in range(40)))
        assert [rows[0][0] for rows in sums] == list(range(1, 41))
        await asyncio.gather(*(raw.write(STORE, f"S{i}", f"store {i}") for i in range(10)))
        # deferred writes (their own transaction with SET LOCAL synchronous_commit)
        for i in range(10):
            raw.defer("UPDATE stores SET city = ? WHERE code = ?", ("上海", f"S{i}"), key=i)
        # a refused row (too long for the column) costs only itself: the batch is
        # retried row by row, each in its own transaction
        raw.defer("UPDATE stores SET city = ? WHERE code = ?", ("长" * 300, "S0"), key=100)
        await raw.settle()
        # the engine's sessions, concurrently
        sessions = session_factory(engine)

        async def read(i: int) -> int:
            async with transaction(sessions) as session:
                query = select(func.count(Store.id)).where(
                    Store.city == "上海", Store.code != f"S{i}"
                )
                return (await session.exec(query)).one()

        assert await asyncio.gather(*(read(i % 10) for i in range(20))) == [9] * 20
        assert await raw.once("SELECT count(*) FROM stores") == [(10,)]
        assert await _prepared(engine) == 0  # nothing left behind on the server connection
    finally:
        await engine.dispose()


async def test_without_the_setting_the_startup_parameters_are_refused(bouncer: Stack):
    engine = make_engine(bouncer.database_url)
    try:
        raw = rawdb.for_engine(engine)
        with pytest.raises(Exception, match="unsupported startup parameter"):
            await raw.fetch("SELECT 1")
    finally:
        await engine.dispose()
