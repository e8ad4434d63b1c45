"""Reads of the points lots: the member's next expiry, points past their last day the
daily job has not expired yet, and `balance_check` (ledger = balance = open lots)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import bindparam, func, literal_column, union_all
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.errors import NotFound
from models.ledger import LEDGER, LOTS, MEMBERS
from models.tables import PointsEntry

NEXT_EXPIRY = (
    select(func.sum(LOTS.c.remaining).label("points"), LOTS.c.expires_on.label("day"))
    .where(
        LOTS.c.member_id == bindparam("member_id"),
        LOTS.c.remaining > 0,
        LOTS.c.expires_on
        == select(func.min(LOTS.c.expires_on))
        .where(
            LOTS.c.member_id == bindparam("member_id"),
            LOTS.c.remaining > 0,
            LOTS.c.expires_on >= bindparam("today"),
        )
        .scalar_subquery(),
    )
    .group_by(LOTS.c.expires_on)
)
"""The member's next expiry: one row (points, day), or none. Parameters `member_id`,
`today`. Built once: the chat bot's "积分" runs it on every call (building a statement
costs more than running it); `models.tiers.progress.tier_progress_and_expiry` reads it along
with the member's purchases."""


LAPSED = (
    select(func.coalesce(func.sum(LOTS.c.remaining), 0))
    .where(
        LOTS.c.member_id == bindparam("member_id"),
        LOTS.c.remaining > 0,
        LOTS.c.expires_on < bindparam("today"),
    )
    .scalar_subquery()
)
"""Points of the member's lots past their last day that the daily job has not expired
yet: no longer the member's, though still in `members.points` until it runs."""
_NEXT = NEXT_EXPIRY.subquery()
EXPIRY_AND_LAPSED = union_all(
    select(literal_column("'lot'"), _NEXT.c.day, _NEXT.c.points),
    select(literal_column("'lapsed'"), literal_column("NULL"), LAPSED),
)
"""`NEXT_EXPIRY` and `LAPSED` in one read: ('lot', day, points) when something expires,
and ('lapsed', NULL, points)."""


async def expiry_and_lapsed(
    session: AsyncSession, *, member_id: int, today: date
) -> tuple[tuple[int, date] | None, int]:
    """(`expiring_soon`, the points of lots already past their last day): what the
    balance of "积分" leaves out until the daily job expires them."""
    params = {"member_id": member_id, "today": today}
    expiry, lapsed = None, 0
    for kind, day, points in await session.exec(EXPIRY_AND_LAPSED, params=params):
        if kind == "lot":
            expiry = (int(points), day)
        else:
            lapsed = int(points or 0)
    return expiry, lapsed


async def expiring_soon(
    session: AsyncSession, *, member_id: int, today: date
) -> tuple[int, date] | None:
    """(points, day) of the member's next expiry on or after `today`; None if nothing expires."""
    params = {"member_id": member_id, "today": today}
    row = (await session.exec(NEXT_EXPIRY, params=params)).first()
    return None if row is None else (int(row[0]), row[1])


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
