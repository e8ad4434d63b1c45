"""What the staff console reads, limited to what the signed-in staff member may see.

A `Scope` is the viewer: an assistant sees the members they own
(`members.assistant_id`, DOMAIN.md §8) and the card applications of those members
or that they handle; a store manager sees every member and application of their
store. Every function takes the scope, so a page cannot forget the limit.
Reads only; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.strict import DIGITS
from models.tables.cards import CardApplication, CardEvent
from models.tables.members import Member
from models.tables.outbox import OutboxMessage

MAX_LIST = 500


@dataclass(frozen=True)
class Scope:
    assistant_id: int
    store_id: int
    manager: bool


def _members_in(scope: Scope):
    if scope.manager:
        return Member.store_id == scope.store_id
    return Member.assistant_id == scope.assistant_id


def _digits(text: str) -> str:
    return "".join(c for c in text if c in DIGITS)


async def list_members(
    session: AsyncSession, *, scope: Scope, query: str = "", limit: int = MAX_LIST
) -> list[Member]:
    """The viewer's members by name, optionally those whose name contains `query` or
    whose phone contains its digits (at least 3 of them)."""
    stmt = select(Member).where(_members_in(scope))
    query = query.strip()
    if query:
        conditions = [col(Member.name).contains(query, autoescape=True)]
        digits = _digits(query)
        if len(digits) >= 3:
            conditions.append(col(Member.phone).contains(digits, autoescape=True))
        stmt = stmt.where(or_(*conditions))
    stmt = stmt.order_by(col(Member.name), col(Member.id)).limit(limit)
    return list((await session.exec(stmt)).all())


async def visible_member(session: AsyncSession, *, scope: Scope, member_id: int) -> Member | None:
    """The member if the viewer may see them, else None (whether or not they exist)."""
    stmt = select(Member).where(Member.id == member_id, _members_in(scope))
    return (await session.exec(stmt)).first()


async def contact_history(
    session: AsyncSession, *, member_id: int, limit: int = 100
) -> list[OutboxMessage]:
    """The member's proactive messages (the outbox), newest first."""
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.member_id == member_id)
        .order_by(col(OutboxMessage.send_after).desc(), col(OutboxMessage.id).desc())
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())


async def card_history(
    session: AsyncSession, *, member_id: int
) -> list[tuple[CardEvent, CardApplication]]:
    """Every step of the member's card applications, newest first."""
    stmt = (
        select(CardEvent, CardApplication)
        .join(CardApplication, CardApplication.id == CardEvent.application_id)
        .where(CardApplication.member_id == member_id)
        .order_by(col(CardEvent.at).desc(), col(CardEvent.id).desc())
    )
    return [(e, a) for e, a in await session.exec(stmt)]


def _applications_in(scope: Scope):
    if scope.manager:
        return or_(CardApplication.store_id == scope.store_id, Member.store_id == scope.store_id)
    return or_(
        CardApplication.assistant_id == scope.assistant_id,
        Member.assistant_id == scope.assistant_id,
    )


async def applications(
    session: AsyncSession, *, scope: Scope
) -> list[tuple[CardApplication, Member]]:
    """The card applications the viewer tracks, with their members, oldest first."""
    stmt = (
        select(CardApplication, Member)
        .join(Member, Member.id == CardApplication.member_id)
        .where(_applications_in(scope))
        .order_by(col(CardApplication.created_at), col(CardApplication.id))
    )
    return [(a, m) for a, m in await session.exec(stmt)]


async def visible_application(
    session: AsyncSession, *, scope: Scope, application_id: int
) -> CardApplication | None:
    stmt = (
        select(CardApplication)
        .join(Member, Member.id == CardApplication.member_id)
        .where(CardApplication.id == application_id, _applications_in(scope))
    )
    return (await session.exec(stmt)).first()


async def unmailable_second_notices(
    session: AsyncSession, *, scope: Scope
) -> list[tuple[CardApplication, Member, datetime | None]]:
    """The viewer's applications notified a second time with no address to mail the card
    to (none on the application nor on the member), with the time of the second notice
    (the latest ``notified_again`` step), oldest application first."""
    last_notice = (
        select(CardEvent.application_id, func.max(CardEvent.at).label("at"))
        .where(CardEvent.to_status == "notified_again")
        .group_by(col(CardEvent.application_id))
        .subquery()
    )
    stmt = (
        select(CardApplication, Member, last_notice.c.at)
        .join(Member, Member.id == CardApplication.member_id)
        .outerjoin(last_notice, last_notice.c.application_id == CardApplication.id)
        .where(_applications_in(scope), CardApplication.status == "notified_again")
        .where(_blank(CardApplication.mail_address), _blank(Member.address))
        .order_by(col(CardApplication.created_at), col(CardApplication.id))
    )
    return [(a, m, at) for a, m, at in await session.exec(stmt)]


def _blank(column):
    return func.coalesce(func.trim(column), "") == ""


async def with_birthdays(session: AsyncSession, *, scope: Scope) -> list[Member]:
    """The viewer's members who have a birthday on file."""
    stmt = (
        select(Member)
        .where(_members_in(scope), col(Member.birthday_month).is_not(None))
        .where(col(Member.birthday_day).is_not(None))
        .order_by(col(Member.id))
    )
    return list((await session.exec(stmt)).all())


async def dormant(
    session: AsyncSession, *, scope: Scope, bought_before: datetime, limit: int = MAX_LIST
) -> list[Member]:
    """The viewer's members whose last purchase was before `bought_before`, longest
    absent first (members who never bought are not dormant)."""
    stmt = (
        select(Member)
        .where(_members_in(scope), col(Member.last_purchase_at) < bought_before)
        .order_by(col(Member.last_purchase_at), col(Member.id))
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())


async def outbox_rows(
    session: AsyncSession,
    *,
    scope: Scope,
    kinds: Collection[str],
    planned_on: date,
    occasions: Collection[str] = (),
) -> list[OutboxMessage]:
    """The outbox rows of `kinds` for the viewer's members planned on `planned_on`, or
    for one of `occasions` (the keys a plan names, whichever day they were saved on)."""
    if not kinds:
        return []
    day_or_key = col(OutboxMessage.planned_on) == planned_on
    if occasions:
        day_or_key = or_(day_or_key, col(OutboxMessage.occasion).in_(sorted(set(occasions))))
    stmt = (
        select(OutboxMessage)
        .join(Member, Member.id == OutboxMessage.member_id)
        .where(_members_in(scope))
        .where(col(OutboxMessage.kind).in_(sorted(set(kinds))), day_or_key)
        .order_by(col(OutboxMessage.member_id), col(OutboxMessage.id))
    )
    return list((await session.exec(stmt)).all())


async def member_ids(session: AsyncSession, *, scope: Scope) -> set[int]:
    rows = await session.exec(select(Member.id).where(_members_in(scope)))
    return set(rows.all())
