"""Writing a replay's rows on the session's own connection and transaction through the
driver: on PostgreSQL the write as one statement (`_pg_statement`: a `WITH` part a
table, the rows as arrays; wide rows — new members — by `COPY` before it), on SQLite
one `executemany` a table, in the order the
foreign keys need. Values are turned into what the column types store (`Money`: cents,
`UTCDateTime`: UTC — on SQLite the text SQLAlchemy writes, as `models.rawdb.sql_time`)
— SQLAlchemy's per-value processing cost as much as the database's work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Date, String, Table
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
            return _pg_step(table, names, records)
        marks = ", ".join("?" * len(names))
        columns = ", ".join(f'"{n}"' for n in names)
        return Step(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", records)

    def update(self, table: Table, columns: Sequence[str], rows: list) -> Step | None:
        """The UPDATE of `columns` of each row (a dict, or an object with the columns as
        attributes) by id, its values taken now."""
        if not rows:
            return None
        names = [*columns, "id"]
        records = self._values(table, names, rows)
        if self.dialect == "postgresql":
            records = list({r[-1]: r for r in records}.values())  # one row per id
            return _pg_step(table, names, records, update=tuple(columns))
        sets = ", ".join(f'"{c}" = ?' for c in columns)
        return Step(f"UPDATE {table.name} SET {sets} WHERE id = ?", records)

    async def run(self, steps: list[Step | None]) -> None:
        """Run `steps`: on PostgreSQL one statement (`_pg_statement`) for each run of steps
        between the `COPY`s of wide rows, on SQLite one `executemany` each."""
        todo = [step for step in steps if step is not None]
        if not todo:
            return
        if self.dialect == "postgresql":
            for copy, group in groupby(todo, key=lambda step: step.copy):
                if copy:
                    for step in group:
                        await self.driver.copy_records_to_table(
                            step.table, records=step.records, columns=step.columns
                        )
                else:
                    sql, args = _pg_statement(list(group))
                    await self.driver.execute(sql, *args)
            return
        for step in todo:
            await self.driver.executemany(step.sql, step.records)


@dataclass
class Step:
    """One statement of a write with its driver values: SQLite, `sql` run for each of the
    `records`; PostgreSQL, the `records` as one array a column (`types`) inserted into
    `table` `columns`, or (`update`) setting those columns of the rows by id — or (`copy`)
    rows to `COPY`."""

    sql: str | None
    records: list
    table: str = ""
    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    update: tuple[str, ...] = ()
    copy: bool = False
    """PostgreSQL: the `records` are rows, `COPY`'d into `table` `columns`."""


def _pg_step(table: Table, names: list[str], records: list, update: tuple = ()) -> Step:
    if not update and len(names) > WIDE:
        return Step(None, records, table.name, names, copy=True)
    arrays = [list(column) for column in zip(*records, strict=True)]
    types = [_pg_type(table.c[n]) for n in names]
    return Step(None, arrays, table.name, names, types, update)


WIDE = 16
"""Inserts of rows wider than this go by `COPY` (a member row: 35 columns): as array
parameters their values cost ~3× the client's CPU of a `COPY`'s records, which outweighs
the round trips saved."""


def _pg_type(column) -> str:
    """The PostgreSQL type of `column`'s array parameter: its own (a type decorator's
    underlying type), text for strings — a cast to ``varchar(n)`` would cut a longer
    value silently, where the column's own assignment refuses it."""
    if isinstance(column.type, String):
        return "text"
    return str(column.type.compile(dialect=postgresql.dialect()))


def _pg_statement(steps: list[Step]) -> tuple[str, list]:
    """One statement for a write's steps, one round trip to the server: each step a
    data-modifying `WITH` part reading its rows from `unnest` of one array parameter a
    column. The parts run to completion whatever the main query reads; the foreign keys
    are checked at the end of the statement, so a part may insert rows referencing those
    another part inserts. (A write in ten statements waited for ten turns of an event
    loop that is busy replaying the next batch meanwhile.)"""
    parts, args = [], []
    for n, step in enumerate(steps):
        first = len(args) + 1
        args.extend(step.records)
        arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(step.types))
        columns = ", ".join(f'"{c}"' for c in step.columns)
        if step.update:
            sets = ", ".join(f'"{c}" = v."{c}"' for c in step.update)
            body = (
                f"UPDATE {step.table} AS t SET {sets} FROM unnest({arrays}) AS v({columns})"
                " WHERE t.id = v.id"
            )
        else:
            body = f"INSERT INTO {step.table} ({columns}) SELECT * FROM unnest({arrays})"
        parts.append(f"w{n} AS ({body})")
    return f"WITH {', '.join(parts)} SELECT 1", args


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
