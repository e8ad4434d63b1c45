"""The numbers a store watches (DOMAIN.md §9, source 003), for the manager's page.

Definitions (docs/staff-console.md repeats them for staff):

- **Data capture rate per assistant** (`capture_rates`): the members an assistant
  *opened* in the period — members whose join date lies in [start, end], credited
  to the assistant of their first assignment (`assignments`, the card-opening
  owner; a member recorded without history counts for ``members.assistant_id``) —
  and of those, how many have the minimum record of DOMAIN.md §1 complete: a name,
  a phone and a birth month and day. ``rate`` = complete ÷ opened;
  ``complete_per_day`` = complete ÷ days in the period.
- **Messaging opt-in rate** (`opt_in_rate`): members not stopped ÷ all members.
- **Churn rate** (`churn_rate`): 1 − (members with a second purchase in the period ÷
  all members). A member has "a second purchase in the period" when at least one
  purchase dated in [start, end] is not the member's first purchase ever (a repeat
  purchase); "all members" are those who joined on or before `end`.
- **Pickup progress** (`pickup_progress`): card applications per status.
- **Eligible but not applied**: `models.tiers.upgrade.eligible_not_applied`.
- **Latest redistribution** (`latest_redistribution`): the members taken back on
  the most recent day `models.probation.redistribute` took any back, and where
  they went.

Every function is keyword-only, takes the session and a store id, reads only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

from sqlalchemy import case, func
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards
from models.ownership import NO_PURCHASE, REDISTRIBUTED
from models.tables.cards import CardApplication
from models.tables.members import Assignment, Assistant, Member
from models.tables.purchases import Purchase


@dataclass(frozen=True)
class Ratio:
    numerator: int
    denominator: int

    @property
    def rate(self) -> float | None:
        """numerator ÷ denominator; None when there is nothing to divide by."""
        return self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True)
class Churn(Ratio):
    """`numerator`: members with a repeat purchase in the period; `denominator`: members."""

    @property
    def rate(self) -> float | None:
        return 1 - self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True)
class CaptureRate:
    assistant_id: int
    code: str
    name: str
    opened: int
    complete: int
    days: int

    @property
    def rate(self) -> float | None:
        return self.complete / self.opened if self.opened else None

    @property
    def complete_per_day(self) -> float:
        return self.complete / self.days if self.days else 0.0


@dataclass(frozen=True)
class Moved:
    member_id: int
    member_name: str
    phone: str
    from_assistant_id: int
    to_assistant_id: int | None


@dataclass(frozen=True)
class Redistribution:
    day: date | None
    moved: list[Moved]


def _days(start: date, end: date) -> int:
    return max(0, (end - start).days + 1)


def complete_record(member: Member) -> bool:
    """The minimum record of DOMAIN.md §1: name, phone, birth month and day."""
    return bool(
        (member.name or "").strip()
        and member.phone
        and member.birthday_month is not None
        and member.birthday_day is not None
    )


async def capture_rates(
    session: AsyncSession, *, store_id: int, start: date, end: date
) -> list[CaptureRate]:
    """Per active assistant of the store (and any other assistant credited with an
    opening), members opened in [start, end] and those with a complete record."""
    first = (
        select(Assignment.member_id, func.min(Assignment.id).label("first_id"))
        .group_by(Assignment.member_id)
        .subquery()
    )
    opener = aliased(Assignment)
    stmt = (
        select(Member, opener.assistant_id)
        .outerjoin(first, first.c.member_id == Member.id)
        .outerjoin(opener, opener.id == first.c.first_id)
        .where(
            Member.store_id == store_id,
            col(Member.join_date) >= start,
            col(Member.join_date) <= end,
        )
    )
    opened: Counter[int] = Counter()
    complete: Counter[int] = Counter()
    for member, first_owner in await session.exec(stmt):
        owner = first_owner if first_owner is not None else member.assistant_id
        if owner is None:
            continue
        opened[owner] += 1
        if complete_record(member):
            complete[owner] += 1
    staff = await session.exec(
        select(Assistant).where(
            (Assistant.store_id == store_id) & (Assistant.active == True)  # noqa: E712
            | col(Assistant.id).in_(list(opened) or [-1])
        )
    )
    days = _days(start, end)
    return sorted(
        (CaptureRate(a.id, a.code, a.name, opened[a.id], complete[a.id], days) for a in staff),
        key=lambda c: c.code,
    )


async def opt_in_rate(session: AsyncSession, *, store_id: int) -> Ratio:
    """Members of the store not stopped ÷ all members of the store."""
    stopped = case((Member.stopped == True, 1), else_=0)  # noqa: E712
    total, n_stopped = (
        await session.exec(
            select(func.count(), func.coalesce(func.sum(stopped), 0)).where(
                Member.store_id == store_id
            )
        )
    ).one()
    return Ratio(int(total) - int(n_stopped), int(total))


async def churn_rate(session: AsyncSession, *, store_id: int, start: date, end: date) -> Churn:
    """1 − members with a repeat purchase in [start, end] ÷ members joined by `end`."""
    total = (
        await session.exec(
            select(func.count()).where(Member.store_id == store_id, col(Member.join_date) <= end)
        )
    ).one()
    earlier = aliased(Purchase)
    repeat = (
        select(earlier.id)
        .where(
            earlier.member_id == Purchase.member_id,
            (col(earlier.at) < col(Purchase.at))
            | ((col(earlier.at) == col(Purchase.at)) & (col(earlier.id) < col(Purchase.id))),
        )
        .exists()
    )
    returned = (
        await session.exec(
            select(func.count(func.distinct(Purchase.member_id)))
            .join(Member, Member.id == Purchase.member_id)
            .where(
                Member.store_id == store_id,
                col(Member.join_date) <= end,
                col(Purchase.local_date) >= start,
                col(Purchase.local_date) <= end,
                repeat,
            )
        )
    ).one()
    return Churn(int(returned), int(total))


async def pickup_progress(session: AsyncSession, *, store_id: int) -> list[tuple[str, int]]:
    """(status, applications) for the store's card applications, in tracker order;
    statuses with none are left out."""
    rows = await session.exec(
        select(CardApplication.status, func.count())
        .join(Member, Member.id == CardApplication.member_id)
        .where((CardApplication.store_id == store_id) | (Member.store_id == store_id))
        .group_by(CardApplication.status)
    )
    counts = dict(rows.all())
    return [(s, int(counts[s])) for s in cards.STATUSES if counts.get(s)]


async def latest_redistribution(session: AsyncSession, *, store_id: int) -> Redistribution:
    """The members of the store taken back on the latest redistribution day, and who
    got them (None: nobody eligible, now unowned)."""
    day = (
        await session.exec(
            select(func.max(Assignment.ended_on))
            .join(Member, Member.id == Assignment.member_id)
            .where(Assignment.end_reason == NO_PURCHASE, Member.store_id == store_id)
        )
    ).one()
    if day is None:
        return Redistribution(None, [])
    taken = await session.exec(
        select(Assignment, Member)
        .join(Member, Member.id == Assignment.member_id)
        .where(
            Assignment.end_reason == NO_PURCHASE,
            Assignment.ended_on == day,
            Member.store_id == store_id,
        )
        .order_by(col(Member.id))
    )
    taken_rows = list(taken)
    given = dict(
        (
            await session.exec(
                select(Assignment.member_id, Assignment.assistant_id).where(
                    Assignment.reason == REDISTRIBUTED,
                    Assignment.start_on == day,
                    col(Assignment.member_id).in_([m.id for _a, m in taken_rows]),
                )
            )
        ).all()
    )
    return Redistribution(
        day,
        [Moved(m.id, m.name, m.phone, a.assistant_id, given.get(m.id)) for a, m in taken_rows],
    )
