"""The "today and next month" page's data, from the planner's own rules.

- Birthdays (solar and lunar) are resolved to Gregorian dates by
  `models.calendar.occurrences_between`, the function the planner's rules rest on.
- Follow-ups due today are `scheduler.planner.iter_plan` for the day, kept to the
  viewer's members and the care kinds: what the daily job plans, not a copy of it.
- Dormant members use the planner's `dormant_range` cut-off with
  ``messaging.dormant_months``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Settings
from models import staff_queries
from models.calendar import LUNAR, occurrences_between
from models.clock import add_months, day_start
from models.staff_queries import Scope
from models.tables import Member
from scheduler.kinds import CARE_KINDS
from scheduler.planner import dormant_range, iter_plan


@dataclass(frozen=True)
class Birthday:
    member: Member
    on: date
    lunar: str | None
    """"MM-DD" of a lunar birthday, None for a solar one."""


@dataclass(frozen=True)
class CareDue:
    member: Member
    kind: str
    status: str
    reason: str | None


@dataclass(frozen=True)
class Agenda:
    today: date
    next_month_start: date
    birthdays_today: list[Birthday]
    birthdays_next_month: list[Birthday]
    care: list[CareDue]
    dormant: list[Member]


def next_month(today: date) -> tuple[date, date]:
    """The first and last day of the calendar month after `today`'s."""
    first = add_months(today.replace(day=1), 1)
    return first, add_months(first, 1) - timedelta(days=1)


def birthdays_between(members: list[Member], start: date, end: date) -> list[Birthday]:
    out = []
    for m in members:
        assert m.birthday_month is not None and m.birthday_day is not None
        for on in occurrences_between(
            start,
            end,
            month=m.birthday_month,
            day=m.birthday_day,
            calendar=m.birthday_calendar,
            leap_month=m.birthday_leap_month,
        ):
            lunar = (
                f"{m.birthday_month:02d}-{m.birthday_day:02d}"
                if m.birthday_calendar == LUNAR
                else None
            )
            out.append(Birthday(m, on, lunar))
    return sorted(out, key=lambda b: (b.on, b.member.name, b.member.id))


async def care_due(
    session: AsyncSession, *, settings: Settings, scope: Scope, today: date
) -> list[CareDue]:
    """The care follow-ups the planner has for the viewer's members on `today`."""
    mine = await staff_queries.member_ids(session, scope=scope)
    if not mine:
        return []
    planned = []
    async for batch in iter_plan(session, settings=settings, day=today, members=mine):
        planned.extend(p for p in batch if p.kind in CARE_KINDS)
    if not planned:
        return []
    members = {m.id: m for m in await staff_queries.list_members(session, scope=scope)}
    out = []
    for p in planned:
        member = members.get(p.member_id) or await session.get(Member, p.member_id)
        if member is not None:
            out.append(CareDue(member, p.kind, p.status, p.reason))
    return out


async def agenda(session: AsyncSession, *, settings: Settings, scope: Scope, today: date) -> Agenda:
    with_birthday = await staff_queries.with_birthdays(session, scope=scope)
    first, last = next_month(today)
    _start, cutoff = dormant_range(today, settings.messaging.dormant_months)
    dormant = await staff_queries.dormant(
        session, scope=scope, bought_before=day_start(cutoff, settings.brand.tz)
    )
    return Agenda(
        today=today,
        next_month_start=first,
        birthdays_today=birthdays_between(with_birthday, today, today),
        birthdays_next_month=birthdays_between(with_birthday, first, last),
        care=await care_due(session, settings=settings, scope=scope, today=today),
        dormant=dormant,
    )
