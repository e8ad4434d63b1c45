"""The daily job: upkeep and the plan for one brand day, run by one replica only.

    result = await run_daily(sessions, settings=settings, day=date(2026, 12, 1), now=now)

Who runs it (LIBRARIES.md "apscheduler": one scheduler per deployment, the safety in
the database): the first transaction *claims* the day. On PostgreSQL it takes
``pg_try_advisory_xact_lock(PLAN_LOCK)`` and gives up (None) when another replica
holds it; on SQLite ``BEGIN IMMEDIATE`` serialises the claims. The claim itself is a
`PlanRun` row for the day, inserted with ``ON CONFLICT (day) DO NOTHING``:

- no row yet → ours;
- a finished row → the day is done, nothing to do (None);
- a started but unfinished row older than `STALE_AFTER` (its replica died mid-run)
  → taken over with a conditional UPDATE (only one replica can win it);
- a younger unfinished row → another replica is at work (None).

Then, in order, each step in its own transaction so that one failing step is
logged and does not stop the others (every step is idempotent, and each catches up
on a later day what an earlier day missed):

1. upkeep: on the rebate day (004, `points.rebate`) balances become vouchers
   (`models.rebate.run_rebate`, before the expiry), points lots past their last day
   expire (`models.points.expire_due`),
   vouchers past theirs expire (`models.voucher_till.expire_vouchers`), tiers whose
   validity ended are reviewed (`models.tiers.review.review_tiers`), members whose
   probation ended without a purchase are handed out again (`models.probation.
   redistribute`, DOMAIN.md §8), inbound-message history older than
   `INBOUND_KEEP` is pruned (`models.inbound.prune`). Upkeep runs before the plan
   so that messages are signed by the member's current assistant and care follows
   the current tier.
2. the plan: `scheduler.plan.planner.save_day` — `plan_day` + `save_plan` a batch of
   members at a time (ON CONFLICT DO NOTHING on (member, kind, occasion): a rerun or
   a second replica queues nothing twice).
3. card pickup steps (DOMAIN.md §5), after the plan as the planner asks
   (`scheduler.plan.planner.due_card_steps`): the application moves to the status the
   planned message announced — ``notified`` (card_pickup), ``notified_again`` (the
   day after a missed appointment, card_pickup_again), ``mailed`` (after the second
   miss, card_mailed). The step is taken even when the message was suppressed
   (the member stopped, no channel): the card's progress does not depend on
   messaging.

The PlanRun is marked finished (with the counts) only when the plan step
succeeded; otherwise it stays unfinished and is taken over by the next attempt
once stale (a restart's catch-up, `scheduler.service`).

`month_end_birthdays` lists next month's birthdays per store (DOMAIN.md §6, the
staff's month-end list; `memberbot report birthdays`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, func, or_, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards, points, probation, voucher_till
from models.calendar import LUNAR, SOLAR, month_bounds, occurrences_between, yearly_days_between
from models.context import work_id
from models.db import insert_ignore, is_postgres, transaction
from models.errors import DomainError
from models.inbound import prune
from models.phone import mask_phone
from models.rebate import run_rebate
from models.settings import Settings
from models.tables.members import Assistant, Member, Store
from models.tables.outbox import PlanRun
from models.tiers import review
from scheduler.plan.card_steps import due_card_steps
from scheduler.plan.planner import save_day

log = logging.getLogger("memberbot.jobs")

PLAN_LOCK = 7_364_002
"""pg_try_advisory_xact_lock key: one replica claims the day at a time."""
STALE_AFTER = timedelta(minutes=30)
"""A started, unfinished PlanRun older than this is taken over (its replica died)."""
INBOUND_KEEP = timedelta(days=3)
"""Inbound-message history kept for de-duplication (platform retries come in minutes)."""
CARD_ACTOR = "scheduler"


@dataclass
class DailyResult:
    """What one daily run did."""

    day: date
    upkeep: dict[str, int] = field(default_factory=dict)
    """Per upkeep step: points expired, vouchers expired, tier changes, members
    redistributed, inbound rows pruned, card applications moved."""
    failed: list[str] = field(default_factory=list)
    """The steps that raised (logged with their traceback)."""
    queued: int = 0
    suppressed: int = 0
    already: int = 0
    """Planned messages whose (member, kind, occasion) was already in the outbox."""

    @property
    def finished(self) -> bool:
        return "plan" not in self.failed


# --------------------------------------------------------------------------- the claim


async def _claim(session: AsyncSession, *, day: date, now: datetime, replica: str) -> bool:
    """Claim `day` for this replica (module docstring); False when it is not ours."""
    if is_postgres(session):
        lock = text("SELECT pg_try_advisory_xact_lock(:k)")
        if not (await session.exec(lock, params={"k": PLAN_LOCK})).one()[0]:
            return False
    table = PlanRun.__table__
    stmt = (
        insert_ignore(session.bind.dialect.name, table)
        .values(day=day, started_at=now, replica=replica, planned=0, suppressed=0)
        .on_conflict_do_nothing(index_elements=["day"])
        .returning(table.c.id)
    )
    if (await session.exec(stmt)).first() is not None:
        return True
    takeover = (
        update(table)
        .where(
            table.c.day == day,
            table.c.finished_at.is_(None),
            table.c.started_at < now - STALE_AFTER,
        )
        .values(started_at=now, replica=replica)
    )
    taken = (await session.exec(takeover)).rowcount == 1
    if taken:
        log.warning("plan run for %s: taking over a stale unfinished run", day)
    return taken


async def run_finished(session: AsyncSession, *, day: date) -> bool:
    """True when the daily run for `day` has finished."""
    stmt = select(PlanRun.finished_at).where(PlanRun.day == day)
    return (await session.exec(stmt)).first() is not None


# --------------------------------------------------------------------------- the steps

Step = Callable[[AsyncSession], Awaitable[int]]


def _engine(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    return sessions.kw["bind"]


def upkeep_steps(*, settings: Settings, day: date, now: datetime) -> dict[str, Step]:
    """The upkeep steps of the day, by name, each a function of one session."""
    loyalty = settings.loyalty

    async def rebate(s: AsyncSession) -> int:
        return await run_rebate(s, rules=settings.points, today=day, now=now)

    async def expire_points(s: AsyncSession) -> int:
        return await points.expire_due(s, rules=settings.points, today=day, now=now)

    async def expire_vouchers(s: AsyncSession) -> int:
        return await voucher_till.expire_vouchers(s, today=day, now=now)

    async def review_tiers(s: AsyncSession) -> int:
        lowered = await review.review_tiers(s, rules=loyalty, today=day, now=now)
        raised = await review.review_upgrades(s, rules=loyalty, today=day, now=now)
        return len(lowered) + len(raised)

    async def redistribute(s: AsyncSession) -> int:
        return len(await probation.redistribute(s, rules=loyalty, today=day))

    return {
        "rebate": rebate,  # before the expiry: the ended period's points are rebated
        "expire_points": expire_points,
        "expire_vouchers": expire_vouchers,
        "review_tiers": review_tiers,
        "redistribute": redistribute,
    }


async def _step(
    sessions: async_sessionmaker[AsyncSession], result: DailyResult, name: str, fn: Step
) -> None:
    try:
        async with transaction(sessions) as session:
            result.upkeep[name] = await fn(session)
    except Exception:
        log.exception("daily job %s: step %s failed", result.day, name)
        result.failed.append(name)


async def plan_and_save(session: AsyncSession, *, settings: Settings, day: date, now: datetime):
    """The plan of `day`, saved (`scheduler.plan.planner.save_day`: a batch of members saved
    while the next is composed); the `SaveResult`."""
    return await save_day(session, settings=settings, day=day, now=now)


async def _card_steps(
    session: AsyncSession, *, settings: Settings, day: date, now: datetime
) -> int:
    moved = 0
    for step in await due_card_steps(session, day=day, tz=settings.brand.tz):
        try:
            async with session.begin_nested():  # one refused step leaves the others
                await cards.advance(
                    session,
                    rules=settings.loyalty,
                    application_id=step.application_id,
                    to_status=step.to_status,
                    actor=CARD_ACTOR,
                    now=now,
                    note=step.kind,
                    tz=settings.brand.tz,
                )
        except DomainError:
            log.exception("daily job %s: card application %s not moved", day, step.application_id)
            continue
        moved += 1
    return moved


# --------------------------------------------------------------------------- the job


async def run_daily(
    sessions: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    day: date,
    now: datetime,
    replica: str = "",
) -> DailyResult | None:
    """Upkeep, plan and card steps for brand day `day` (module docstring).

    None when the day is not this replica's to run: already finished, or being run
    by another replica. `now` stamps every row written (no clock read here). The run
    has an id (`models.context.work_id`, "daily-…") in its log lines and outbox rows.
    """
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    with work_id("daily"):
        return await _run_daily(sessions, settings=settings, day=day, now=now, replica=replica)


async def _run_daily(
    sessions: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    day: date,
    now: datetime,
    replica: str,
) -> DailyResult | None:
    async with transaction(sessions) as session:
        if not await _claim(session, day=day, now=now, replica=replica):
            return None
    result = DailyResult(day=day)
    for name, fn in upkeep_steps(settings=settings, day=day, now=now).items():
        await _step(sessions, result, name, fn)
    try:
        result.upkeep["prune_inbound"] = await prune(_engine(sessions), before=now - INBOUND_KEEP)
    except Exception:
        log.exception("daily job %s: step prune_inbound failed", day)
        result.failed.append("prune_inbound")
    try:
        async with transaction(sessions) as session:
            saved = await plan_and_save(session, settings=settings, day=day, now=now)
        result.queued, result.suppressed, result.already = (
            saved.queued,
            saved.suppressed,
            saved.already,
        )
    except Exception:
        log.exception("daily job %s: the plan failed", day)
        result.failed.append("plan")
        return result

    async def card_steps(s: AsyncSession) -> int:
        return await _card_steps(s, settings=settings, day=day, now=now)

    await _step(sessions, result, "card_steps", card_steps)
    async with transaction(sessions) as session:
        await session.exec(
            update(PlanRun.__table__)
            .where(PlanRun.__table__.c.day == day)
            .values(finished_at=now, planned=result.queued, suppressed=result.suppressed)
        )
    log.info(
        "daily job %s: %d queued, %d suppressed, %d already planned; upkeep %s%s",
        day, result.queued, result.suppressed, result.already, result.upkeep,
        f"; failed: {', '.join(result.failed)}" if result.failed else "",
    )  # fmt: skip
    return result


# --------------------------------------------------------------------------- birthdays report


@dataclass(frozen=True)
class BirthdayRow:
    store: str
    member: str
    birthday: date
    """The day it is celebrated in the report's month (lunar birthdays resolved)."""
    calendar: str
    """solar | lunar"""
    assistant: str
    phone: str
    """Masked (`models.phone.mask_phone`)."""
    stopped: bool


async def month_end_birthdays(
    session: AsyncSession, *, settings: Settings, month: date
) -> list[BirthdayRow]:
    """Every member whose birthday falls in the calendar month of `month`, per store.

    For the staff's month-end list (DOMAIN.md §6): full name, the day it is
    celebrated that month (lunar birthdays resolved to the solar date by the rules
    of `models.calendar`: 29 Feb on 28 Feb in common years, lunar day 30 on the
    29th of a short month, leap-month birthdays in the regular month), the member's
    assistant, the phone masked, and whether the member stopped proactive messages.
    Members without a store come last with an empty store name. Sorted by store,
    day, name. Reads only; the candidate (month, day) pairs are computed first, so
    the query reads only the members concerned.
    """
    first, last = month_bounds(month)
    conditions = []
    for calendar in (SOLAR, LUNAR):
        for m, days in yearly_days_between(first, last, calendar).items():
            conditions.append(
                and_(
                    Member.birthday_calendar == calendar,
                    Member.birthday_month == m,
                    col(Member.birthday_day).in_(days),
                )
            )
    if not conditions:
        return []
    helper = aliased(Assistant)
    stmt = (
        select(
            Member.name,
            Member.phone,
            Member.birthday_calendar,
            Member.birthday_month,
            Member.birthday_day,
            Member.birthday_leap_month,
            Member.stopped,
            func.coalesce(Store.name, ""),
            func.coalesce(helper.name, ""),
        )
        .outerjoin(Store, Store.id == Member.store_id)
        .outerjoin(helper, helper.id == Member.assistant_id)
        .where(or_(*conditions))
    )
    rows: list[BirthdayRow] = []
    for name, phone, cal, m, dom, leap, stopped, store, assistant in await session.exec(stmt):
        hits = occurrences_between(first, last, month=m, day=dom, calendar=cal, leap_month=leap)
        if not hits:
            continue
        rows.append(
            BirthdayRow(
                store=store,
                member=name,
                birthday=hits[0],
                calendar=cal,
                assistant=assistant,
                phone=mask_phone(phone),
                stopped=bool(stopped),
            )
        )
    rows.sort(key=lambda r: (r.store == "", r.store, r.birthday, r.member))
    return rows


def birthday_report_month(today: date) -> date:
    """The default month of the report: the month after `today`'s."""
    return month_bounds(today, ahead=1)[0]
