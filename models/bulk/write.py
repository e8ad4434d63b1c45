"""Writing a replay's rows, a table at a time, in the order the foreign keys need, on
the session's own connection and transaction through the driver: PostgreSQL `COPY`
(asyncpg `copy_records_to_table`) for new rows, asyncpg `executemany` for updates;
SQLite `executemany`. Values are turned into what the column types store (`Money`: cents,
`UTCDateTime`: UTC — on SQLite the text SQLAlchemy writes, as `models.rawdb.sql_time`)
— SQLAlchemy's per-value processing cost as much as the database's work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Date, Table
from sqlalchemy.dialects import postgresql
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


_CONVERTERS: dict[tuple[str, str, tuple[str, ...]], list[tuple[int, Callable]]] = {}
"""(dialect, table, columns) → the positions whose values need turning into driver values."""


class Writer:
    """The driver of the session's connection, and the statements it runs."""

    def __init__(self, driver: Any, dialect: str):
        self.driver, self.dialect = driver, dialect

    @classmethod
    async def of(cls, session: AsyncSession) -> Writer:
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        return cls(raw.driver_connection, conn.dialect.name)

    def _values(self, table: Table, names: Sequence[str], rows: list) -> list:
        """The driver values of `rows`: dicts, or objects with the columns as attributes."""
        key = (self.dialect, table.name, tuple(names))
        if key not in _CONVERTERS:
            converters = [_converter(table.c[n], self.dialect) for n in names]
            _CONVERTERS[key] = [(i, f) for i, f in enumerate(converters) if f is not _same]
        special = _CONVERTERS[key]
        get = (itemgetter if isinstance(rows[0], dict) else attrgetter)(*names)
        if len(names) == 1:
            return [(get(row),) for row in rows]
        if not special:
            return [get(row) for row in rows]
        out = []
        for row in rows:
            values = list(get(row))
            for i, f in special:
                values[i] = f(values[i])
            out.append(values)
        return out

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> Step | None:
        """The insert of `rows` (every row with the same keys: the table's columns, `id`
        left out where the table numbers them), its values taken now."""
        if not rows:
            return None
        names = list(rows[0])
        records = self._values(table, names, rows)
        if self.dialect == "postgresql":
            return Step(None, records, table.name, names)
        marks = ", ".join("?" * len(names))
        columns = ", ".join(f'"{n}"' for n in names)
        return Step(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", records)

    def update(self, table: Table, columns: Sequence[str], rows: list) -> Step | None:
        """The UPDATE of `columns` of each row (a dict, or an object with the columns as
        attributes) by id, its values taken now. PostgreSQL: one statement for all the
        rows (`UPDATE … FROM unnest(<one array per column>)`; a statement per row cost a
        third of the database's time of a purchase import)."""
        if not rows:
            return None
        names = [*columns, "id"]
        records = self._values(table, names, rows)
        if self.dialect == "postgresql":
            records = list({r[-1]: r for r in records}.values())  # one row per id
            arrays = ", ".join(f"${i}::{_pg_type(table.c[n])}[]" for i, n in enumerate(names, 1))
            sets = ", ".join(f'"{c}" = v."{c}"' for c in columns)
            alias = ", ".join(f'"{n}"' for n in names)
            sql = (
                f"UPDATE {table.name} AS t SET {sets} FROM unnest({arrays}) AS v({alias})"
                " WHERE t.id = v.id"
            )
            return Step(sql, [list(column) for column in zip(*records, strict=True)], once=True)
        sets = ", ".join(f'"{c}" = ?' for c in columns)
        return Step(f"UPDATE {table.name} SET {sets} WHERE id = ?", records)

    async def run(self, steps: list[Step | None]) -> None:
        for step in steps:
            if step is None:
                continue
            if step.sql is None:
                await self.driver.copy_records_to_table(
                    step.table, records=step.records, columns=step.columns
                )
            elif step.once:
                await self.driver.execute(step.sql, *step.records)
            else:
                await self.driver.executemany(step.sql, step.records)


def _pg_type(column) -> str:
    """The PostgreSQL type of `column` (a type decorator's underlying type)."""
    return str(column.type.compile(dialect=postgresql.dialect()))


@dataclass
class Step:
    """One statement of a write, with its driver values: `sql` run for each record, or
    (`sql` None) a PostgreSQL `COPY` of the records into `table` `columns`, or (`once`)
    `sql` run once."""

    sql: str | None
    records: list
    """The rows' values; with `once`, the statement's parameters (one array a column)."""
    table: str = ""
    columns: list[str] = field(default_factory=list)
    once: bool = False


def replay_steps(w: Writer, replay: Replay) -> list[Step | None]:
    """The statements writing `replay`, their values taken now: the replay's objects may
    change afterwards (the next batch replays on from them) without changing the write."""
    apps, assignments = CardApplication.__table__, Assignment.__table__
    return [
        w.insert(MEMBERS, [m.row() for m in replay.members if m.new is not None]),
        w.insert(Purchase.__table__, [p.values for p in replay.purchases]),
        w.insert(PurchaseItem.__table__, replay.items),
        w.insert(PointsEntry.__table__, replay.entries),
        w.insert(PointsLot.__table__, replay.lots),
        w.insert(TierChange.__table__, replay.tier_changes),
        w.insert(apps, [a.values for a in replay.applications if a.new]),
        w.update(
            apps, ("status", "updated_at"), [a.values for a in replay.applications if not a.new]
        ),
        w.insert(CardEvent.__table__, replay.card_events),
        w.insert(assignments, [a.values for a in replay.assignments if a.new]),
        w.update(
            assignments, ("established",), [a.values for a in replay.assignments if not a.new]
        ),
        w.update(MEMBERS, UPDATED, [m for m in replay.members if m.new is None]),
    ]
