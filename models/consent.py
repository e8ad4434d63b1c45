"""Consent to proactive messages: stop and resume (DOMAIN.md §7 rule 6, CONTRACT.md keywords).

"If this message disturbs you, reply 不接受" — the reply stops every further
proactive message. Each change appends a `ConsentEvent` (the proof; never
deleted) and flips `members.stopped` with a conditional UPDATE, so two
simultaneous stops record one event. A stop is confirmed once: stopping a
member already stopped records nothing and returns False; resume is symmetric.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables import ConsentEvent, Member

STOP = "stop"
RESUME = "resume"


async def _change(
    session: AsyncSession, *, member: Member, stopped: bool, channel: str, at: datetime, source: str
) -> bool:
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    # A conditional UPDATE, so two simultaneous stops record one event, not two.
    result = await session.exec(
        update(Member)
        .where(Member.id == member.id, Member.stopped == (not stopped))
        .values(stopped=stopped, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        await session.refresh(member, ["stopped"])
        return False
    set_committed_value(member, "stopped", stopped)
    set_committed_value(member, "updated_at", at)
    session.add(
        ConsentEvent(
            member_id=member.id,
            action=STOP if stopped else RESUME,
            channel=channel,
            at=at,
            source=source[:200],
        )
    )
    await session.flush()
    return True


async def stop(
    session: AsyncSession, *, member: Member, channel: str, at: datetime, source: str
) -> bool:
    """Stop proactive messages to `member`. False (and nothing recorded) if already stopped."""
    return await _change(
        session, member=member, stopped=True, channel=channel, at=at, source=source
    )


async def resume(
    session: AsyncSession, *, member: Member, channel: str, at: datetime, source: str
) -> bool:
    """Resume proactive messages to `member`. False (and nothing recorded) if not stopped."""
    return await _change(
        session, member=member, stopped=False, channel=channel, at=at, source=source
    )


async def history(session: AsyncSession, *, member_id: int) -> list[ConsentEvent]:
    """Every consent event of the member, oldest first."""
    stmt = (
        select(ConsentEvent)
        .where(ConsentEvent.member_id == member_id)
        .order_by(ConsentEvent.at, ConsentEvent.id)
    )
    return list((await session.exec(stmt)).all())
