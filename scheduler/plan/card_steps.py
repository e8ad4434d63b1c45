"""Card-tracker steps due on a day (DOMAIN.md §5), and the messages announcing them.

`card_step_due` is the pure rule; `card_steps` reads the applications waiting
for a step (by status) with their approval and second-notice days;
`due_card_steps` is what the daily job moves after the plan; `card_messages`
adds the planner's ``card_pickup`` / ``card_pickup_again`` / ``card_mailed``
candidates.
"""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import local_date
from models.tables.cards import CardApplication, CardEvent
from models.tables.members import Member
from scheduler.plan.plan_reads import CHUNK, among, chunks
from scheduler.plan.plan_types import CardApp, CardStep, Due, PlanDay

_CARD_READY = ("approved", "notified", "notified_again")


def card_step_due(
    *,
    status: str,
    day: date,
    approved_on: date | None,
    pickup_date: date | None,
    notified_again_on: date | None,
    has_address: bool,
) -> tuple[str, str] | None:
    """(message kind, next status) of the card tracker step due on `day`, or None.

    DOMAIN.md §5: after approval the member is told to come (``card_pickup`` →
    ``notified``, from the day after the approval); a missed appointment (the
    agreed `pickup_date` has passed) brings a second notice (``card_pickup_again``
    → ``notified_again``); when the member still does not come — the agreed day
    and the day after the second notice have both passed — the card is mailed to
    the address on file (``card_mailed`` → ``mailed``; without an address nothing
    happens automatically and the store follows up).
    """
    if status == "approved":
        if approved_on is None or approved_on < day:
            return ("card_pickup", "notified")
    elif status == "notified":
        if pickup_date is not None and pickup_date < day:
            return ("card_pickup_again", "notified_again")
    elif status == "notified_again" and has_address:
        marks = [d for d in (pickup_date, notified_again_on) if d is not None]
        if notified_again_on is not None:
            marks.append(notified_again_on + timedelta(days=1))
        if not marks or max(marks) < day:
            return ("card_mailed", "mailed")
    return None


async def card_steps(
    session: AsyncSession, *, day: date, tz: ZoneInfo
) -> list[tuple[CardStep, CardApp]]:
    """The steps due on `day` with their applications, oldest application first."""
    pg = session.bind.dialect.name == "postgresql"
    stmt = select(
        CardApplication.id, CardApplication.member_id, CardApplication.tier,
        CardApplication.status, CardApplication.store_id, CardApplication.assistant_id,
        CardApplication.pickup_date, CardApplication.mail_address,
    ).where(col(CardApplication.status).in_(_CARD_READY))  # fmt: skip
    apps = [CardApp(*row) for row in await session.exec(stmt)]
    if not apps:
        return []
    approved: dict[int, date] = {}
    again: dict[int, date] = {}
    addresses: dict[int, str | None] = {}
    for chunk in chunks([a.id for a in apps], CHUNK):
        stmt = select(CardEvent.application_id, CardEvent.to_status, CardEvent.at).where(
            among(pg, CardEvent.application_id, chunk),
            col(CardEvent.to_status).in_(("approved", "notified_again")),
        )
        for app_id, to_status, at in await session.exec(stmt):
            target = approved if to_status == "approved" else again
            d = local_date(at, tz)
            if app_id not in target or d > target[app_id]:
                target[app_id] = d
    mailing = sorted({a.member_id for a in apps if a.status == "notified_again"})
    for chunk in chunks(mailing, CHUNK):
        stmt = select(Member.id, Member.address).where(among(pg, Member.id, chunk))
        addresses.update(dict(list(await session.exec(stmt))))
    out = []
    for a in sorted(apps, key=lambda a: a.id):
        step = card_step_due(
            status=a.status,
            day=day,
            approved_on=approved.get(a.id),
            pickup_date=a.pickup_date,
            notified_again_on=again.get(a.id),
            has_address=bool((a.mail_address or addresses.get(a.member_id) or "").strip()),
        )
        if step is not None:
            out.append((CardStep(a.id, a.member_id, step[0], step[1]), a))
    return out


async def due_card_steps(session: AsyncSession, *, day: date, tz: ZoneInfo) -> list[CardStep]:
    """The card-tracker steps due on brand day `day` (`card_step_due`), oldest application first.

    The daily job plans the day first (the planner announces these steps), then
    moves each application with `models.cards.advance(..., to_status=step.to_status)`.
    """
    return [step for step, _app in await card_steps(session, day=day, tz=tz)]


async def card_messages(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    """A message for each card step due on the plan's day, signed by the application's store."""
    for step, app in await card_steps(plan.session, day=plan.day, tz=plan.tz):
        due[step.member_id].append(
            Due(
                step.kind,
                f"card:{step.application_id}",
                data=app,
                store_id=app.store_id,
                assistant_id=app.assistant_id,
            )
        )
