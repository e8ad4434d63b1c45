"""Consent to proactive messages: stop and resume (DOMAIN.md §7 rule 6, CONTRACT.md keywords).

"If this message disturbs you, reply 不接受" — the reply stops every further
proactive message. Each change appends a `ConsentEvent` (the proof; never
deleted) and flips `members.stopped` with a conditional UPDATE, so two
simultaneous stops record one event. A stop is confirmed once: stopping a
member already stopped records nothing and returns False; resume is symmetric.

Stops are kept by address too: words from a phone number or an openid that is
no member's yet (`stop_address`, `resume_address`) are recorded with no member,
with their time, channel and address. When the address joins — a member created
with that phone (the API, the CSV import), an openid set on a member or bound to
one — `adopt_address` gives the member those events unchanged (the proof) and,
when the last of them is a stop, stops the member, unless the member's own
consent changed later.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables.members import ConsentEvent, Member

STOP = "stop"
RESUME = "resume"


async def _record(
    session: AsyncSession,
    *,
    member_id: int | None,
    address: str | None,
    stopped: bool,
    channel: str,
    at: datetime,
    source: str,
) -> None:
    """One entry of the consent history: the proof of a stop or resume, never deleted."""
    session.add(
        ConsentEvent(
            member_id=member_id,
            address=address,
            action=STOP if stopped else RESUME,
            channel=channel,
            at=at,
            source=source[:200],
        )
    )
    await session.flush()


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
    await _record(
        session, member_id=member.id, address=None, stopped=stopped, channel=channel, at=at,
        source=source,
    )  # fmt: skip
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


# --------------------------------------------------------------------------- addresses


async def _address_events(session: AsyncSession, address: str) -> list[ConsentEvent]:
    """The events of `address` not yet given to a member, oldest first."""
    stmt = (
        select(ConsentEvent)
        .where(ConsentEvent.address == address, ConsentEvent.member_id == None)  # noqa: E711
        .order_by(col(ConsentEvent.at), col(ConsentEvent.id))
    )
    return list((await session.exec(stmt)).all())


async def address_stopped(session: AsyncSession, *, address: str) -> bool:
    """True when the last word of `address` (no member's yet) was a stop."""
    events = await _address_events(session, address)
    return bool(events) and events[-1].action == STOP


async def _address_change(
    session: AsyncSession, *, stopped: bool, channel: str, address: str, at: datetime, source: str
) -> bool:
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    if await address_stopped(session, address=address) == stopped:
        return False
    await _record(
        session, member_id=None, address=address, stopped=stopped, channel=channel, at=at,
        source=source,
    )  # fmt: skip
    return True


async def stop_address(
    session: AsyncSession, *, channel: str, address: str, at: datetime, source: str
) -> bool:
    """Stop proactive messages to an address that is no member's yet (a phone number, an
    openid): kept until it joins (`adopt_address`). False if its last word was a stop."""
    return await _address_change(
        session, stopped=True, channel=channel, address=address, at=at, source=source
    )


async def resume_address(
    session: AsyncSession, *, channel: str, address: str, at: datetime, source: str
) -> bool:
    """Undo `stop_address`. False (nothing recorded) when the address is not stopped."""
    return await _address_change(
        session, stopped=False, channel=channel, address=address, at=at, source=source
    )


async def adopt_address(session: AsyncSession, *, member: Member, address: str) -> bool:
    """`address` now belongs to `member`: its events become the member's, unchanged, and a
    last word "stop" stops the member — unless the member's own consent changed after it.
    True when this stopped the member."""
    events = await _address_events(session, address)
    if not events:
        return False
    ids = [e.id for e in events]
    await session.exec(
        update(ConsentEvent)
        .where(col(ConsentEvent.id).in_(ids))
        .values(member_id=member.id)
        .execution_options(synchronize_session=False)
    )
    for e in events:
        set_committed_value(e, "member_id", member.id)
    last = events[-1]
    if last.action != STOP or member.stopped:
        return False
    later = select(ConsentEvent.id).where(
        ConsentEvent.member_id == member.id,
        col(ConsentEvent.id).not_in(ids),
        col(ConsentEvent.at) > last.at,
    )
    if (await session.exec(later)).first() is not None:
        return False
    result = await session.exec(
        update(Member)
        .where(Member.id == member.id, Member.stopped == False)  # noqa: E712
        .values(stopped=True)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        set_committed_value(member, "stopped", True)
    return bool(result.rowcount)


async def history(session: AsyncSession, *, member_id: int) -> list[ConsentEvent]:
    """Every consent event of the member, oldest first."""
    stmt = (
        select(ConsentEvent)
        .where(ConsentEvent.member_id == member_id)
        .order_by(ConsentEvent.at, ConsentEvent.id)
    )
    return list((await session.exec(stmt)).all())
