"""Writing a replay's rows: one executemany per table and kind (insert, update), in the
order the foreign keys need."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam
from sqlmodel.ext.asyncio.session import AsyncSession

from models.bulk.state import MEMBER_COLUMNS, MemberState
from models.tables.cards import CardApplication, CardEvent
from models.tables.ledger import PointsEntry, PointsLot, TierChange
from models.tables.members import Assignment, Member
from models.tables.purchases import Purchase, PurchaseItem

if TYPE_CHECKING:
    from models.bulk.receipts import Replay

MEMBERS = Member.__table__
UPDATED = tuple(c for c in MEMBER_COLUMNS if c not in ("id", "phone", "card_no"))
"""The member columns a replay may change."""


async def insert(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.exec(table.insert(), params=rows)  # type: ignore[call-overload]


async def update(
    session: AsyncSession, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """UPDATE `columns` of each row by id (one executemany)."""
    if not rows:
        return
    stmt = (
        table.update()
        .where(table.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in columns})
    )
    params = [{f"b_{k}": row[k] for k in ("id", *columns)} for row in rows]
    await session.exec(stmt, params=params)  # type: ignore[call-overload]


async def write_members(session: AsyncSession, members: list[MemberState]) -> None:
    """New members inserted (in enrolment order: a referrer before whom they referred),
    then the stored ones updated."""
    await insert(session, MEMBERS, [m.row() for m in members if m.new is not None])
    await update(session, MEMBERS, UPDATED, [m.row() for m in members if m.new is None])


async def write_replay(session: AsyncSession, replay: Replay) -> None:
    await write_members(session, [m for m in replay.members if m.new is not None])
    await insert(session, Purchase.__table__, [p.values for p in replay.purchases])
    await insert(session, PurchaseItem.__table__, replay.items)
    await insert(session, PointsEntry.__table__, replay.entries)
    await insert(session, PointsLot.__table__, replay.lots)
    await insert(session, TierChange.__table__, replay.tier_changes)
    apps = CardApplication.__table__
    await insert(session, apps, [a.values for a in replay.applications if a.new])
    stored = [a.values for a in replay.applications if not a.new]
    await update(session, apps, ("status", "updated_at"), stored)
    await insert(session, CardEvent.__table__, replay.card_events)
    assignments = Assignment.__table__
    await insert(session, assignments, [a.values for a in replay.assignments if a.new])
    established = [a.values for a in replay.assignments if not a.new]
    await update(session, assignments, ("established",), established)
    await update(session, MEMBERS, UPDATED, [m.row() for m in replay.members if m.new is None])
