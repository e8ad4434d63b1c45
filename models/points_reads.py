"""Reads of the points lots: points past their last day the daily job has not expired yet
(`lapsed_points`), the member's next expiry (`next_expiry`, `expiring_soon`), the
member's ledger (`history`) and `balance_check` (ledger = balance = open lots)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Text, bindparam, cast, func, literal_column
from sqlalchemy.sql.expression import ColumnElement, ScalarSelect
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.errors import NotFound
from models.ledger import LEDGER, LOTS, MEMBERS
from models.tables.ledger import PointsEntry

_SPACE = literal_column("' '", Text)
_ZERO = literal_column("0")


def lapsed_points(member_id: ColumnElement, today: ColumnElement) -> ScalarSelect:
    """Points of the member's lots past their last day that the daily job has not expired
    yet: no longer the member's, though still in `members.points` until it runs. A scalar
    subquery (correlated when `member_id` is a column of the enclosing statement)."""
    lots = LOTS.alias("l")
    return (
        select(func.coalesce(func.sum(lots.c.remaining), _ZERO))
        .where(lots.c.member_id == member_id, lots.c.remaining > _ZERO, lots.c.expires_on < today)
        .scalar_subquery()
    )


def next_expiry(member_id: ColumnElement, today: ColumnElement) -> ScalarSelect:
    """The member's next expiry as the text "day points" (the first day from `today` on
    with open lots, and their sum), or NULL: one column, so the read of the chat bot's
    "积分" (`models.tiers.facts`) carries it next to the rest; `read_expiry` parses it."""
    lots = LOTS.alias("l")
    return (
        select(cast(lots.c.expires_on, Text) + _SPACE + cast(func.sum(lots.c.remaining), Text))
        .where(lots.c.member_id == member_id, lots.c.remaining > _ZERO, lots.c.expires_on >= today)
        .group_by(lots.c.expires_on)
        .order_by(lots.c.expires_on)
        .limit(literal_column("1"))
        .offset(_ZERO)  # SQLite would add "OFFSET ?" otherwise
        .scalar_subquery()
    )


def read_expiry(text: str | None) -> tuple[int, date] | None:
    """(points, day) from the text of `next_expiry`; None when nothing expires."""
    if text is None:
        return None
    day, points = text.split(" ")
    return int(points), date.fromisoformat(day)


_NEXT_EXPIRY = select(next_expiry(bindparam("member_id"), bindparam("today", type_=Date)))


async def expiring_soon(
    session: AsyncSession, *, member_id: int, today: date
) -> tuple[int, date] | None:
    """(points, day) of the member's next expiry on or after `today`; None if nothing expires."""
    params = {"member_id": member_id, "today": today}
    return read_expiry((await session.exec(_NEXT_EXPIRY, params=params)).one())


async def balance_check(session: AsyncSession, *, member_id: int) -> tuple[int, int, int]:
    """(members.points, sum of ledger deltas, sum of open lots) — equal when nothing drifted."""
    points = (await session.exec(select(MEMBERS.c.points).where(MEMBERS.c.id == member_id))).first()
    if points is None:
        raise NotFound("unknown member", "member")
    ledger_sum = select(func.coalesce(func.sum(LEDGER.c.delta), 0)).where(
        LEDGER.c.member_id == member_id
    )
    lots_sum = select(func.coalesce(func.sum(LOTS.c.remaining), 0)).where(
        LOTS.c.member_id == member_id
    )
    ledger = (await session.exec(ledger_sum)).one()
    lots = (await session.exec(lots_sum)).one()
    return int(points), int(ledger), int(lots)


async def history(session: AsyncSession, *, member_id: int, limit: int = 100) -> list[PointsEntry]:
    """The member's ledger entries, newest first: every change with its reason and note
    (an adjustment's note says who and why; a return's names the receipt)."""
    stmt = (
        select(PointsEntry)
        .where(PointsEntry.member_id == member_id)
        .order_by(col(PointsEntry.id).desc())
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())
