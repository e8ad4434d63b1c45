"""Saving a plan: the planned messages into the outbox, each once, with its first event.

`save_plan` inserts with ``INSERT … ON CONFLICT (member_id, kind, occasion) DO
NOTHING``: the database, not a check-then-insert, makes a rerun or a second
replica harmless; it also records on the member the last purchase a ``dormant``
greeting was written for (``members.dormant_noted_at``), so it is not due again.
`pending_only` drops what the outbox already holds (the dry-run view of
``memberbot plan``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.context import request_id
from models.outbox.states import PLANNED, SUPPRESSED
from models.tables.outbox import OutboxMessage
from scheduler.plan.plan_reads import CHUNK, among, chunks
from scheduler.plan.plan_types import Planned, SaveResult

_OUTBOX_FIELDS = (
    "member_id", "kind", "occasion", "planned_on", "store_id", "assistant_id", "locale", "text",
    "channel", "via", "address", "status", "reason", "send_after",
)  # fmt: skip
"""The `Planned` fields written to the outbox as they are."""


async def pending_only(session: AsyncSession, planned: Sequence[Planned]) -> list[Planned]:
    """`planned` without the messages whose (member, kind, occasion) is already in the outbox."""
    pg = session.bind.dialect.name == "postgresql"
    existing: set[tuple[int, str, str]] = set()
    ordered = sorted(planned, key=lambda p: p.member_id)
    for chunk in chunks(ordered, CHUNK):
        ids = sorted({p.member_id for p in chunk})
        occasions = sorted({p.occasion for p in chunk})
        stmt = select(OutboxMessage.member_id, OutboxMessage.kind, OutboxMessage.occasion).where(
            among(pg, OutboxMessage.member_id, ids),
            col(OutboxMessage.occasion).in_(occasions),
        )
        existing.update(tuple(row) for row in await session.exec(stmt))
    return [p for p in planned if p.key not in existing]


async def save_plan(
    session: AsyncSession, *, planned: Iterable[Planned], now: datetime, chunk_size: int = CHUNK
) -> SaveResult:
    """Insert the planned messages; (member, kind, occasion) already present → skipped.

    ``INSERT … ON CONFLICT DO NOTHING RETURNING`` in batches, rows in key order
    (so two concurrent runs wait on each other instead of deadlocking), and one
    ``outbox_events`` row (planned → queued / suppressed) per inserted message.
    On PostgreSQL each batch goes as column arrays through one ``INSERT … SELECT
    FROM unnest(…)`` (several times faster than executemany); on SQLite as multi-row
    ``VALUES`` of driver values (`_insert_sqlite`). Never commits.
    """
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    rows = sorted(planned, key=lambda p: p.key)
    pg = session.bind.dialect.name == "postgresql"
    insert_batch = _insert_pg if pg else _insert_sqlite
    inserted = suppressed = 0
    for chunk in chunks(rows, chunk_size * 5 if pg else chunk_size):
        new = await insert_batch(session, chunk, now)
        await _note_dormant(session, chunk, pg)
        if not new:
            continue
        inserted += len(new)
        suppressed += sum(1 for _id, status, _reason in new if status == SUPPRESSED)
        await _insert_events(session, new, now, pg)
    return SaveResult(inserted=inserted, already=len(rows) - inserted, suppressed=suppressed)


_PG_TYPES = {
    "member_id": "integer", "kind": "varchar", "occasion": "varchar", "planned_on": "date",
    "store_id": "integer", "assistant_id": "integer", "locale": "varchar", "text": "varchar",
    "channel": "varchar", "via": "varchar", "address": "varchar", "status": "varchar",
    "reason": "varchar", "send_after": "timestamptz",
}  # fmt: skip
_PG_INSERT = text(
    f"INSERT INTO outbox ({', '.join(_OUTBOX_FIELDS)}, attempts, created_at, updated_at, "
    "request_id) "
    f"SELECT {', '.join(_OUTBOX_FIELDS)}, 0, :now, :now, CAST(:rid AS varchar) FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_PG_TYPES[c]}[])" for c in _OUTBOX_FIELDS)
    + f") WITH ORDINALITY AS u({', '.join(_OUTBOX_FIELDS)}, n) ORDER BY n "
    "ON CONFLICT (member_id, kind, occasion) DO NOTHING RETURNING id, status, reason"
)
_PG_EVENTS = text(
    "INSERT INTO outbox_events (message_id, from_status, to_status, at, reason) "
    "SELECT id, :from_status, status, :at, reason FROM unnest("
    "CAST(:ids AS integer[]), CAST(:statuses AS varchar[]), CAST(:reasons AS varchar[])"
    ") AS u(id, status, reason)"
)


async def _insert_pg(session: AsyncSession, chunk: Sequence[Planned], now: datetime) -> list:
    params: dict[str, Any] = {c: [getattr(p, c) for p in chunk] for c in _OUTBOX_FIELDS}
    params["now"] = now
    params["rid"] = request_id.get()
    return list(await session.exec(_PG_INSERT, params=params))


_SQLITE_CHUNK = 1000
"""Rows per SQLite statement: 18 values a row stays under its 32,766 bind variables."""
_STAMPS = ("attempts", "created_at", "updated_at", "request_id")
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
"""How SQLAlchemy stores a `UTCDateTime` on SQLite (UTC, naive, microseconds)."""


def _sqlite_datetime(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    return at.astimezone(UTC).strftime(_SQLITE_DATETIME)


def _sqlite_row(p: Planned, stamp: str, rid: str | None) -> tuple:
    return (
        p.member_id, p.kind, p.occasion, p.planned_on.isoformat(), p.store_id, p.assistant_id,
        p.locale, p.text, p.channel, p.via, p.address, p.status, p.reason,
        _sqlite_datetime(p.send_after), 0, stamp, stamp, rid,
    )  # fmt: skip


async def _insert_sqlite(session: AsyncSession, chunk: Sequence[Planned], now: datetime) -> list:
    """One multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` per 1,000 rows, the
    values given to the driver as stored (SQLAlchemy's per-value processing of an
    executemany costs as much as SQLite's own work here)."""
    stamp = _sqlite_datetime(now)
    rid = request_id.get()
    conn = await session.connection()
    cols = ", ".join((*_OUTBOX_FIELDS, *_STAMPS))
    marks = "(" + ", ".join("?" * (len(_OUTBOX_FIELDS) + len(_STAMPS))) + ")"
    new: list = []
    for part in chunks(chunk, _SQLITE_CHUNK):
        sql = (
            f"INSERT INTO outbox ({cols}) VALUES {', '.join([marks] * len(part))} "
            "ON CONFLICT (member_id, kind, occasion) DO NOTHING RETURNING id, status, reason"
        )
        params = tuple(v for p in part for v in _sqlite_row(p, stamp, rid))
        new.extend((await conn.exec_driver_sql(sql, params)).all())
    new.sort()
    return new


_PG_NOTE_DORMANT = text(
    "UPDATE members SET dormant_noted_at = u.at FROM unnest("
    "CAST(:ids AS integer[]), CAST(:ats AS timestamptz[])) AS u(id, at) "
    "WHERE members.id = u.id AND members.last_purchase_at = u.at"
)
_SQLITE_NOTE_DORMANT = (
    "UPDATE members SET dormant_noted_at = last_purchase_at WHERE id = ? AND last_purchase_at = ?"
)


async def _note_dormant(session: AsyncSession, chunk: Sequence[Planned], pg: bool) -> None:
    """Record on each member the last purchase its ``dormant`` greeting (inserted now or
    already in the outbox) was for, so the planner does not find it due again
    (`scheduler.plan.occasion_due.dormant`). Only while that is still the last purchase: one
    made meanwhile keeps the member pending for the next dormancy."""
    noted = [(p.member_id, p.dormant_for) for p in chunk if p.dormant_for is not None]
    if not noted:
        return
    if pg:
        params = {"ids": [i for i, _ in noted], "ats": [at for _, at in noted]}
        await session.exec(_PG_NOTE_DORMANT, params=params)
        return
    conn = await session.connection()
    await conn.exec_driver_sql(_SQLITE_NOTE_DORMANT, [(i, _sqlite_datetime(at)) for i, at in noted])


async def _insert_events(session: AsyncSession, new: list, now: datetime, pg: bool) -> None:
    """The first event of each new message: planned → its status (as `enqueue`)."""
    if pg:
        params = {
            "ids": [r[0] for r in new],
            "statuses": [r[1] for r in new],
            "reasons": [r[2] for r in new],
            "from_status": PLANNED,
            "at": now,
        }
        await session.exec(_PG_EVENTS, params=params)
        return
    at = _sqlite_datetime(now)
    conn = await session.connection()
    await conn.exec_driver_sql(
        "INSERT INTO outbox_events (message_id, from_status, to_status, at, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        [(mid, PLANNED, status, at, why) for mid, status, why in new],
    )
