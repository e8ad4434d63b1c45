"""Points not earned by a purchase: a visit after an assistant's invitation
(`record_visit`) and a staff correction (`adjust_points`)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import local_date as brand_date
from models.errors import Conflict, InvalidInput
from models.ledger import MEMBERS, sync_member
from models.points import post_points
from models.rules import LoyaltyRules
from models.tables.ledger import PointsEntry


async def record_visit(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    member_id: int,
    assistant_id: int | None,
    at: datetime,
) -> PointsEntry | None:
    """Visit points (000: 10 points for a visit after an assistant's invitation).

    At most once per member per brand day (key ``visit:<member>:<day>``); the
    member's visit count grows only when the visit is recorded. None if the day's
    visit was already recorded.
    """
    day = brand_date(at, tz)
    entry = await post_points(
        session,
        rules=rules.points,
        member_id=member_id,
        delta=rules.points.visit_points,
        reason="visit",
        key=f"visit:{member_id}:{day.isoformat()}",
        at=at,
        local_date=day,
        note=f"assistant {assistant_id}" if assistant_id else "",
    )
    if entry is not None:
        stmt = (
            MEMBERS.update()
            .where(MEMBERS.c.id == member_id)
            .values(visits=MEMBERS.c.visits + 1)
            .returning(MEMBERS.c.visits)
        )
        sync_member(session, member_id, visits=(await session.exec(stmt)).scalar_one())
    return entry


async def adjust_points(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    member_id: int,
    delta: int,
    key: str,
    at: datetime,
    reason: str,
    actor: str,
) -> tuple[PointsEntry, bool]:
    """A staff correction (reason ``adjustment``, key ``adjust:<key>``, note
    ``<actor>: <reason>``, so the history says who and why); (entry, True if made now).

    The same key again answers the entry made (another member or number of points under
    it → Conflict "key"). A negative correction may take the balance below zero, like a
    return (`models.ledger.NEGATIVE_ALLOWED`): the points were wrongly given and spent.
    """
    if delta == 0:
        raise InvalidInput("an adjustment needs a non-zero number of points", "points")
    if not reason.strip():
        raise InvalidInput("an adjustment needs a reason", "reason")
    if not key:
        raise InvalidInput("an adjustment needs a key", "key")
    entry = await post_points(
        session,
        rules=rules.points,
        member_id=member_id,
        delta=delta,
        reason="adjustment",
        key=f"adjust:{key}",
        at=at,
        local_date=brand_date(at, tz),
        note=f"{actor}: {reason.strip()}",
    )
    if entry is not None:
        return entry, True
    made = (await session.exec(select(PointsEntry).where(PointsEntry.key == f"adjust:{key}"))).one()
    if made.member_id != member_id or made.delta != delta:
        raise Conflict("this key was used for another adjustment", "key")
    return made, False
