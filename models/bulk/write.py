"""Writing a replay's rows, a table at a time, in the order the foreign keys need, on
the session's own connection and transaction through the driver: PostgreSQL `COPY`
(asyncpg `copy_records_to_table`) for new rows, asyncpg `executemany` for updates;
SQLite `executemany`. Values are turned into what the column types store (`Money`: cents,
`UTCDateTime`: UTC — on SQLite the text SQLAlchemy writes, as `models.rawdb.sql_time`)
— SQLAlchemy's per-value processing cost as much as the database's work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Date, Table
from sqlmodel.ext.asyncio.session import AsyncSession

from models.bulk.state import MEMBER_COLUMNS
from models.rawdb import sql_time
from models.tables.cards import CardApplication, CardEvent
from models.tables.ledger import PointsEntry, PointsLot, TierChange
from models.tables.members import Assignment, Member
from models.tables.purchases import Purchase, PurchaseItem
from models.types import Money, UTCDateTime, to_cents

if TYPE_CHECKING:
    from models.bulk.replay import Replay

MEMBERS = Member.__table__
UPDATED = tuple(c for c in MEMBER_COLUMNS if c not in ("id", "phone", "card_no"))
"""The member columns a purchase may change."""


def _same(value: Any) -> Any:
    return value


def _converter(column, dialect: str) -> Callable[[Any], Any]:
    kind = column.type
    if isinstance(kind, Money):
        return lambda v: None if v is None else to_cents(v)
    if isinstance(kind, UTCDateTime):
        return lambda v: None if v is None else sql_time(v, dialect)
    if dialect == "sqlite" and isinstance(kind, Date):
        return lambda v: v.isoformat() if isinstance(v, date) else v
    if dialect == "sqlite" and isinstance(kind, Boolean):
        return lambda v: None if v is None else int(v)
    return _same


class Writer:
    """The driver of the session's connection, and the statements it runs."""

    def __init__(self, driver: Any, dialect: str):
        self.driver, self.dialect = driver, dialect
        self._converters: dict[tuple[str, tuple[str, ...]], list[tuple[int, Callable]]] = {}

    @classmethod
    async def of(cls, session: AsyncSession) -> Writer:
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        return cls(raw.driver_connection, conn.dialect.name)

    def _values(self, table: Table, names: Sequence[str], rows: list[dict]) -> list[list]:
        key = (table.name, tuple(names))
        if key not in self._converters:
            converters = [_converter(table.c[n], self.dialect) for n in names]
            self._converters[key] = [(i, f) for i, f in enumerate(converters) if f is not _same]
        special = self._converters[key]
        out = []
        for row in rows:
            values = [row[n] for n in names]
            for i, f in special:
                values[i] = f(values[i])
            out.append(values)
        return out

    async def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert `rows` (every row with the same keys: the table's columns, `id` left out
        where the table numbers them)."""
        if not rows:
            return
        names = list(rows[0])
        records = self._values(table, names, rows)
        if self.dialect == "postgresql":
            await self.driver.copy_records_to_table(table.name, records=records, columns=names)
            return
        marks = ", ".join("?" * len(names))
        columns = ", ".join(f'"{n}"' for n in names)
        sql = f"INSERT INTO {table.name} ({columns}) VALUES ({marks})"
        await self.driver.executemany(sql, records)

    async def update(self, table: Table, columns: Sequence[str], rows: list[dict]) -> None:
        """UPDATE `columns` of each row by id."""
        if not rows:
            return
        names = [*columns, "id"]
        records = self._values(table, names, rows)
        if self.dialect == "postgresql":
            sets = ", ".join(f'"{c}" = ${i}' for i, c in enumerate(columns, 1))
            sql = f"UPDATE {table.name} SET {sets} WHERE id = ${len(names)}"
        else:
            sets = ", ".join(f'"{c}" = ?' for c in columns)
            sql = f"UPDATE {table.name} SET {sets} WHERE id = ?"
        await self.driver.executemany(sql, records)


async def write_replay(session: AsyncSession, replay: Replay) -> None:
    w = await Writer.of(session)
    await w.insert(MEMBERS, [m.row() for m in replay.members if m.new is not None])
    await w.insert(Purchase.__table__, [p.values for p in replay.purchases])
    await w.insert(PurchaseItem.__table__, replay.items)
    await w.insert(PointsEntry.__table__, replay.entries)
    await w.insert(PointsLot.__table__, replay.lots)
    await w.insert(TierChange.__table__, replay.tier_changes)
    apps = CardApplication.__table__
    await w.insert(apps, [a.values for a in replay.applications if a.new])
    await w.update(
        apps, ("status", "updated_at"), [a.values for a in replay.applications if not a.new]
    )
    await w.insert(CardEvent.__table__, replay.card_events)
    assignments = Assignment.__table__
    await w.insert(assignments, [a.values for a in replay.assignments if a.new])
    await w.update(
        assignments, ("established",), [a.values for a in replay.assignments if not a.new]
    )
    await w.update(MEMBERS, UPDATED, [m.row() for m in replay.members if m.new is None])
