"""The "today and next month" page's data, from the planner's own rules.

- Birthdays (solar and lunar) are resolved to Gregorian dates by
  `models.calendar.occurrences_between`, the function the planner's rules rest on.
- Follow-ups due today are `scheduler.plan.planner.iter_plan` for the day, kept to the
  viewer's members and the care kinds: what the daily job plans, not a copy of it —
  each shown with its outbox row's real state when it has one (sent, delivered,
  suppressed, failed …), else as "not queued" with what the plan would do.
- Dormant members use the planner's `dormant_range` cut-off with
  ``messaging.dormant_months``.
- Cards nobody will mail: the second pickup notice was missed and there is no
  address, judged by the planner's own `card_step_due` (DOMAIN.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlmodel.ext.asyncio.session import AsyncSession

from models import staff_queries
from models.calendar import LUNAR, month_bounds, occurrences_between
from models.clock import day_start, local_date
from models.kinds import CARE_KINDS
from models.settings import Settings
from models.staff_queries import Scope
from models.tables.cards import CardApplication
from models.tables.members import Member
from scheduler.plan.card_steps import card_step_due
from scheduler.plan.occasion_due import dormant_range
from scheduler.plan.plan_types import Planned
from scheduler.plan.planner import iter_plan


@dataclass(frozen=True)
class Birthday:
    member: Member
    on: date
    lunar: str | None
    """"MM-DD" of a lunar birthday, None for a solar one."""


@dataclass(frozen=True)
class CareDue:
    """A care follow-up of the day: what the outbox holds for it, if anything, and
    what the plan says."""

    member: Member
    kind: str
    outbox_status: str | None
    """The outbox row's status (queued, sent, delivered, suppressed, failed …), or
    None when nothing is in the outbox yet (the daily job has not run)."""
    outbox_reason: str | None
    channel: str | None
    plan_status: str | None
    """queued | suppressed: what the planner would do today; None when the plan no
    longer lists it (the message is in the outbox from an earlier run)."""
    plan_reason: str | None


@dataclass(frozen=True)
class UnmailableCard:
    """A card whose member missed the pickup twice and that has no address to mail it
    to: the daily job cannot mail it, so the store must call the member for one."""

    application: CardApplication
    member: Member
    notified_again_on: date | None


@dataclass(frozen=True)
class Agenda:
    today: date
    next_month_start: date
    birthdays_today: list[Birthday]
    birthdays_next_month: list[Birthday]
    care: list[CareDue]
    dormant: list[Member]
    unmailable: list[UnmailableCard]


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
    """The care follow-ups of the viewer's members on `today`: each with its outbox row's
    real state (queued, sent, delivered, suppressed with the reason, failed …) when it
    is in the outbox, else "not queued" with what the planner would do."""
    mine = await staff_queries.member_ids(session, scope=scope)
    if not mine:
        return []
    planned: dict[tuple[int, str, str], Planned] = {}
    async for batch in iter_plan(session, settings=settings, day=today, members=mine):
        planned.update((p.key, p) for p in batch if p.kind in CARE_KINDS)
    rows = await staff_queries.outbox_rows(
        session,
        scope=scope,
        kinds=CARE_KINDS,
        planned_on=today,
        occasions={occasion for _m, _k, occasion in planned},
    )
    queued = {(r.member_id, r.kind, r.occasion): r for r in rows}
    keys = [k for k in queued if k in planned or queued[k].planned_on == today]
    keys += [k for k in planned if k not in queued]
    if not keys:
        return []
    members = {m.id: m for m in await staff_queries.list_members(session, scope=scope)}
    out = []
    for key in keys:
        row, plan = queued.get(key), planned.get(key)
        member = members.get(key[0]) or await session.get(Member, key[0])
        if member is None:
            continue
        out.append(
            CareDue(
                member,
                key[1],
                outbox_status=row.status if row else None,
                outbox_reason=row.reason if row else None,
                channel=(row.channel or None) if row else None,
                plan_status=plan.status if plan else None,
                plan_reason=plan.reason if plan else None,
            )
        )
    return out


async def unmailable_cards(
    session: AsyncSession, *, settings: Settings, scope: Scope, today: date
) -> list[UnmailableCard]:
    """The viewer's cards whose pickup was missed after the second notice (DOMAIN.md §5)
    and that have no address on file: exactly those the daily job would mail on
    `today` (`card_step_due`, the planner's rule) if they had an address."""
    tz = settings.brand.tz
    out = []
    for app, member, noticed_at in await staff_queries.unmailable_second_notices(
        session, scope=scope
    ):
        noticed_on = local_date(noticed_at, tz) if noticed_at is not None else None
        due = card_step_due(
            status=app.status,
            day=today,
            approved_on=None,
            pickup_date=app.pickup_date,
            notified_again_on=noticed_on,
            has_address=True,
        )
        if due is not None:
            out.append(UnmailableCard(app, member, noticed_on))
    return out


async def agenda(session: AsyncSession, *, settings: Settings, scope: Scope, today: date) -> Agenda:
    with_birthday = await staff_queries.with_birthdays(session, scope=scope)
    first, last = month_bounds(today, ahead=1)
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
        unmailable=await unmailable_cards(session, settings=settings, scope=scope, today=today),
    )
