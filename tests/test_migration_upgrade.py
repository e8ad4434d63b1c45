"""The migration history is frozen and an upgrade keeps the data of an installed database.

`0001_initial_schema` is the first released schema: its file never changes again
(`FROZEN`), and every later change of the tables is a new revision
(`python -m models.migrations.revision`, docs/operations.md "Upgrade"). The upgrade
test builds a database at the first revision, fills every one of its tables with rows
of every column it had, upgrades it to the newest revision and reads every row back,
column by column.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from models.db import MIGRATIONS, alembic_config, make_engine, migrate
from tests.conftest import PG_URL_ENV, is_pg

FROZEN = {
    "0001_initial_schema.py": "0fb1bdcc44df0779cdf339355568234de2658a23bccbb43c8bdab3c4adc407bf",
}
"""SHA-256 of each released revision's file: a released revision is never edited."""

ROWS = 3


def test_released_revisions_are_frozen():
    for name, digest in FROZEN.items():
        text = (MIGRATIONS / "versions" / name).read_bytes()
        assert hashlib.sha256(text).hexdigest() == digest, f"{name} was edited: add a revision"


def test_revisions_form_one_line_from_0001():
    script = ScriptDirectory(str(MIGRATIONS))
    assert len(script.get_heads()) == 1
    chain = [rev.revision for rev in script.walk_revisions()][::-1]
    assert chain[0] == "0001"
    assert chain == [f"{n:04d}" for n in range(1, len(chain) + 1)]


@pytest.fixture
async def first_release_url(tmp_path, monkeypatch):
    """An empty database (its own: not the test template) for the upgrade test."""
    if not is_pg():
        yield f"sqlite+aiosqlite:///{tmp_path / 'released.db'}"
        return
    import os

    base, _, name = os.environ[PG_URL_ENV].rpartition("/")
    target = f"{name}_upgrade"
    admin = base.replace("postgresql+asyncpg", "postgresql") + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{target}"')
        await conn.execute(f'CREATE DATABASE "{target}"')
    finally:
        await conn.close()
    yield f"{base}/{target}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    finally:
        await conn.close()


def _value(column: sa.Column, n: int):
    """A value for row `n` (1..ROWS) of `column`, distinct per row for unique keys."""
    kind = column.type
    if column.foreign_keys:
        return n
    if isinstance(kind, sa.Boolean):
        return n % 2 == 0
    if isinstance(kind, sa.Integer):
        return n
    if isinstance(kind, sa.Float):
        return n + 0.5
    if isinstance(kind, sa.Numeric):
        return Decimal(f"{n}.25")
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 1, n, 8, 30, tzinfo=UTC)
    if isinstance(kind, sa.Date):
        return date(2026, 1, n)
    length = getattr(kind, "length", None) or 40
    return f"{column.name[:6]}-{n}"[:length]


def _fill(conn) -> dict[str, list[dict]]:
    meta = sa.MetaData()
    meta.reflect(conn)
    written: dict[str, list[dict]] = {}
    for table in meta.sorted_tables:
        if table.name == "alembic_version":
            continue
        rows = [
            {c.name: _value(c, n) for c in table.columns}
            for n in range(1, ROWS + 1)
        ]
        conn.execute(table.insert(), rows)
        written[table.name] = rows
    return written


def _read(conn, written: dict[str, list[dict]]) -> dict[str, list[dict]]:
    meta = sa.MetaData()
    meta.reflect(conn)
    back = {}
    for name, rows in written.items():
        table = meta.tables[name]
        columns = [table.c[c] for c in rows[0]]
        order = [table.c[c.name] for c in table.primary_key.columns]
        result = conn.execute(sa.select(*columns).order_by(*order))
        back[name] = [dict(r._mapping) for r in result]
    return back


def _same(a, b) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a.replace(tzinfo=a.tzinfo or UTC) == b.replace(tzinfo=b.tzinfo or UTC)
    if isinstance(a, date) and isinstance(b, str):  # SQLite reflects dates as text
        return a.isoformat() == b[:10]
    if isinstance(a, datetime) and isinstance(b, str):
        return False
    return a == b or str(a) == str(b)


async def test_upgrade_from_the_first_release_keeps_every_row(first_release_url):
    engine = make_engine(first_release_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            written = await conn.run_sync(_fill)
        await migrate(engine)
        async with engine.connect() as conn:
            found = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
            version = found.scalar()
            back = await conn.run_sync(lambda c: _read(c, written))
    finally:
        await engine.dispose()
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert len(written) >= 25  # every table of the first release was filled
    for name, rows in written.items():
        assert len(back[name]) == len(rows), name
        for before, after in zip(rows, back[name], strict=True):
            for column, value in before.items():
                assert _same(value, after[column]), (name, column, value, after[column])
