"""The daily planner: what is due on brand day D, rendered, checked and routed.

    planned = await plan_day(session, settings=settings, day=date(2026, 11, 7))
    result = await save_plan(session, planned=planned, now=now)

`plan_day` is a pure function of the data and `day`: it reads no clock and
writes nothing (`iter_plan` yields the same messages in bounded chunks, for
days that touch every member). `save_plan` inserts them into the outbox with
``INSERT … ON CONFLICT (member_id, kind, occasion) DO NOTHING``: the database,
not a check-then-insert, makes a rerun or a second replica harmless.

What is due on D (DOMAIN.md §5-7, MESSAGING.md; occasion keys in brackets):

- Purchase follow-ups [``purchase:<id>``], day N counting the sale's brand day
  as day 1 (``[messaging.care_days]``): ``points_notice`` day 2, ``care_d3``
  day 3, ``care_d7`` day 7 for VIP tiers (any tier above the entry tier) or
  ``care_d10`` day 10 for the entry tier (the member's tier when planning),
  ``care_d30`` day 30, ``care_d120`` day 120.
- Quarterly fallback (DOMAIN.md §6 "several follow-ups bring no growth in
  points"): a member is *in fallback* on D when at least ``quarterly_after``
  care messages (not suppressed, planned before D) were planned after the day of
  the member's last purchase before D. In fallback, every per-purchase care
  message due on D is replaced by one ``care_d120`` [``quarter:<YYYY>Q<n>``] —
  at most one per calendar quarter, whichever purchase asks for it — and the
  quarterly care continues on days 120 + 91·k after the last purchase (k >= 1)
  while that day is less than ``dormant_months`` - 1 months after it (the
  ``dormant`` greeting takes over). A new purchase ends the fallback.
- Card pickup [``card:<application id>``] (`card_step_due`): ``card_pickup``
  when an application is ``approved`` since a day before D; ``card_pickup_again``
  when it is ``notified`` and the agreed pickup day has passed;
  ``card_mailed`` when it is ``notified_again``, an address is on file, and both
  the agreed day and the day after the second notice have passed. The planner
  only plans the message: the daily job then moves the application
  (`due_card_steps` gives it the same list) — plan first, then step.
- ``birthday`` [``<YYYY>``]: solar or lunar month/day by `models.calendar`
  (29 Feb on 28 Feb in common years, lunar day 30 on the 29th of a short month,
  leap-month birthdays in the regular month, nothing in a leap month);
  ``wedding_anniversary`` [``<YYYY>``] (solar, from the first anniversary);
  ``join_anniversary`` [``<YYYY>``] (the join date's month/day, from the first
  anniversary, 29 Feb joins on 28 Feb in common years).
- ``holiday`` [``<festival code>:<YYYY>``]: every member, on the first festival
  of ``[occasions]`` falling on D (`models.occasions.festivals_on`);
  ``seasonal`` [``<term code>:<YYYY>``]: every member, on a season-start term.
- ``dormant`` [``since:<last purchase day>``]: on every day D on which the
  member's last purchase is more than ``dormant_months`` calendar months before D
  (last purchase < D - months) and no ``dormant`` was recorded for that purchase
  (``members.dormant_noted_at``, which `save_plan` sets when it writes one, queued
  or suppressed) — once per last purchase, but caught up after a day the daily job
  did not run, and for members imported long dormant. Members who never bought
  are not dormant.
- ``points_expiry`` [``lots:<expires_on>``]: open points lots whose last day is
  D + ``points_expiry_notice_days``, summed per member.
- ``voucher_expiry`` [``vouchers:<expires_on>``]: unused vouchers whose last day is
  D + ``voucher_expiry_notice_days``, one message per member naming their codes.
- ``voucher_issued`` [``voucher:<code>``]: an automatic voucher (``rewards.auto``)
  issued on D - 1.

Every message is rendered in the member's locale (``members.locale``, else
``brand.locale``), signed with the store's and the assistant's names (purchase
follow-ups: the store and assistant of the sale; card messages: of the
application; others: the member's own; an inactive assistant falls back to the
member's, a missing store to the brand's name), and checked by
`scheduler.message_rules.check`. Then, per member (`scheduler.policy`):
stopped → suppressed ``stopped``; a broken rule → ``rule:<rule>``; no channel →
``no_channel``; over the weekly cap → ``capped`` (counting the member's messages
not suppressed whose send time lies in the 7 brand days ending on D, except an
assistant's personal greetings: the member's notices and care come first). A
suppressed message is still recorded (its key taken), so it is never planned
again.

Scale: every source is read through an index on the date it depends on
(purchases.local_date, members (birthday_calendar, birthday_month,
birthday_day), (wedding_month, wedding_day), join_date, last_purchase_at,
the partial index of members not yet greeted as dormant for their last purchase,
points_lots' open-lots-by-expiry index, card_applications.status); the
context (identities, recent outbox, stores, assistants, items) is read in bulk
for the members due only, ``chunk_size`` at a time. Holiday and seasonal days
page through all members by id (keyset), so memory stays bounded with
`iter_plan`. The reads of batch k + 1 run while batch k is rendered and checked,
and `save_day` (the daily job) also saves batch k - 1 meanwhile: the database
and this process work at the same time.

The parts: `scheduler.plan.care_calendar` (purchase follow-ups, quarterly fallback),
`scheduler.plan.occasion_due` (birthdays, anniversaries, festivals, seasons, dormant,
expiry), `scheduler.plan.card_steps`, `scheduler.plan.plan_reads` (batch reads),
`scheduler.plan.plan_compose` (one member's messages), `scheduler.plan.plan_save`
(`save_plan`, `pending_only`) and `scheduler.plan.plan_types` (the values passed
between them). This module runs them in order; each part's names are imported from
its own module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from datetime import date, datetime
from typing import NamedTuple

from sqlalchemy import and_
from sqlmodel.ext.asyncio.session import AsyncSession

from models.settings import Settings
from scheduler.plan import care_calendar, occasion_due
from scheduler.plan.card_steps import card_messages
from scheduler.plan.plan_compose import plan_member
from scheduler.plan.plan_reads import BatchContext, among, chunks, members_after, members_by_ids
from scheduler.plan.plan_save import save_plan
from scheduler.plan.plan_types import Due, MemberRow, PlanDay, Planned, SaveResult

_SOURCES = (
    care_calendar.purchase_followups,
    care_calendar.quarterly_days,
    occasion_due.birthdays,
    occasion_due.weddings,
    occasion_due.join_anniversaries,
    occasion_due.dormant,
    occasion_due.points_expiry,
    occasion_due.voucher_expiry,
    occasion_due.voucher_issued,
    card_messages,
)
"""Everything due on a day except the every-member greetings, in this order."""


async def date_driven(plan: PlanDay) -> dict[int, list[Due]]:
    """Everything due on the day except the every-member greetings, by member."""
    due: dict[int, list[Due]] = defaultdict(list)
    for source in _SOURCES:
        await source(plan, due)
    return due


class _Batch(NamedTuple):
    """A batch of members with their candidates and context, read and ready to compose."""

    members: list[MemberRow]
    due: dict[int, list[Due]]
    ctx: BatchContext | None


async def prepare_batch(
    plan: PlanDay, members: list[MemberRow], due: dict[int, list[Due]], contiguous: bool
) -> _Batch:
    """The reads of a batch of members (`due`: their candidates): the class filter of
    care_d7 / care_d10, the quarterly fallback, the batch context."""
    if not members:
        return _Batch(members, due, None)
    ids = [m.id for m in members]
    where_member = (
        (lambda c: and_(c >= ids[0], c <= ids[-1]))
        if contiguous
        else (lambda c: among(plan.pg, c, ids))
    )
    vip_index = plan.settings.tiers
    for m in members:
        cands = due.get(m.id)
        if cands and any(c.vip is not None for c in cands):
            vip = vip_index.index(m.tier) > 0
            due[m.id] = [c for c in cands if c.vip is None or c.vip == vip]
    await care_calendar.apply_fallback(plan, members, due)
    ctx = await BatchContext.load(plan, members, due, where_member)
    return _Batch(members, due, ctx)


async def compose_batch(plan: PlanDay, batch: _Batch) -> list[Planned]:
    """The messages of a prepared batch. Pure computation, which now and then lets the
    event loop run, so that the reads of the next batch proceed meanwhile."""
    out: list[Planned] = []
    for i, m in enumerate(batch.members):
        cands = batch.due.get(m.id)
        if cands:
            out.extend(plan_member(plan, m, cands, batch.ctx))
        if i % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
    return out


_YIELD_EVERY = 32
"""Members composed between two turns of the event loop (`compose_batch`)."""


async def _pipelined(
    plan: PlanDay,
    read_next: Callable[[_Batch | None], Awaitable[_Batch | None]],
    sink: Callable[[list[Planned]], Awaitable[None]] | None = None,
) -> AsyncIterator[list[Planned]]:
    """Compose batch k while batch k + 1 is read: the database works on the reads while
    this process renders and checks texts. `read_next(previous)` reads the batch after
    `previous` (None: the first), or gives None when there is none. With a `sink`, the
    messages of batch k - 1 go to it (saved) just before that read, so saving overlaps
    the composing too; the last batch's go to it at the end. The work ahead is finished
    before each batch is handed on, so the caller may use the session between batches
    (one statement at a time on it, always)."""

    async def ahead_of(batch: _Batch, previous: list[Planned] | None) -> _Batch | None:
        if sink is not None and previous is not None:
            await sink(previous)
        return await read_next(batch)

    batch = await read_next(None)
    previous: list[Planned] | None = None
    while batch is not None:
        ahead = asyncio.ensure_future(ahead_of(batch, previous))
        try:
            out = await compose_batch(plan, batch)
        except BaseException:
            with contextlib.suppress(Exception):
                await ahead
            raise
        batch = await ahead
        previous = out
        yield out
    if sink is not None and previous is not None:
        await sink(previous)


def _batches(
    plan: PlanDay,
    due: dict[int, list[Due]],
    chunk_size: int,
    only: Collection[int] | None = None,
):
    """`read_next` for `_pipelined`: every member by id on holiday and seasonal days,
    else the members with something due. With `only`, just those members (by id, with
    the every-member greetings added on such days)."""
    everyone = occasion_due.every_member(plan)
    if only is not None:
        wanted = set(only)
        ids = wanted if everyone else wanted.intersection(due)
        for member_id in set(due) - wanted:
            del due[member_id]
        for member_id in ids:
            due.setdefault(member_id, []).extend(everyone)
        everyone = []

    async def every_member_after(previous: _Batch | None) -> _Batch | None:
        after = previous.members[-1].id if previous is not None else 0
        members = await members_after(plan, after, chunk_size)
        if not members:
            return None
        batch = {m.id: [*due.pop(m.id, ()), *everyone] for m in members}
        return await prepare_batch(plan, members, batch, contiguous=True)

    parts = list(chunks(sorted(due), chunk_size))
    done = 0

    async def due_members_after(previous: _Batch | None) -> _Batch | None:
        nonlocal done
        if done == len(parts):
            return None
        members = await members_by_ids(plan, parts[done])
        done += 1
        batch = {m.id: due.pop(m.id) for m in members if m.id in due}
        members = [m for m in members if m.id in batch]
        return await prepare_batch(plan, members, batch, contiguous=False)

    return every_member_after if everyone else due_members_after


async def iter_plan(
    session: AsyncSession,
    *,
    settings: Settings,
    day: date,
    chunk_size: int = 2000,
    members: Collection[int] | None = None,
) -> AsyncIterator[list[Planned]]:
    """The messages due on `day`, a batch of members at a time (see `plan_day`).

    Memory stays bounded by `chunk_size` members plus the day's date-driven
    candidates, also on holiday and seasonal days (every member). Reads only.
    `members` (ids) keeps the plan to those members — the staff console's view of
    one assistant's day — so a festival day does not compose every member's greeting.
    """
    plan = PlanDay(session, settings, day)
    due = await date_driven(plan)
    async for out in _pipelined(plan, _batches(plan, due, chunk_size, members)):
        yield out


async def plan_day(session: AsyncSession, *, settings: Settings, day: date) -> list[Planned]:
    """Every proactive message due on brand day `day` (module docstring), in member order.

    A pure function of the data and `day`: no clock read, nothing written. Each
    message is ``queued`` with its channel and send time, or ``suppressed`` with
    the reason. Messages already in the outbox are included (see `pending_only`).
    """
    out: list[Planned] = []
    async for batch in iter_plan(session, settings=settings, day=day):
        out.extend(batch)
    return out


async def save_day(
    session: AsyncSession, *, settings: Settings, day: date, now: datetime, chunk_size: int = 2000
) -> SaveResult:
    """`plan_day` + `save_plan` (what the daily job does), a batch of members at a time:
    batch k is saved while batch k + 1 is composed. Batches come in member order, so the
    rows still go in key order; the same messages are written. Never commits."""
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    plan = PlanDay(session, settings, day)
    due = await date_driven(plan)
    inserted = already = suppressed = 0

    async def save(planned: list[Planned]) -> None:
        nonlocal inserted, already, suppressed
        result = await save_plan(session, planned=planned, now=now)
        inserted += result.inserted
        already += result.already
        suppressed += result.suppressed

    async for _out in _pipelined(plan, _batches(plan, due, chunk_size), sink=save):
        pass
    return SaveResult(inserted=inserted, already=already, suppressed=suppressed)
