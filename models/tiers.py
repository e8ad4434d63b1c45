"""Tiers (cards): reaching, renewing and losing them (DOMAIN.md §3; card tracker in `cards`).

The levels, their reach and renew rules come from `models.rules.TierRules`; Scheme A
(000) is the default, Schemes B (003) and C (004) ship in ``examples/``.

**Windows** are brand days (``purchases.local_date``), both ends included:

- ``single_purchase``: the one receipt being evaluated;
- ``day``: that day; ``month``: its calendar month;
- ``half_year``: the 6 calendar months ending on that day
  (2026-08-15 → 2026-02-16 .. 2026-08-15);
- ``period``: the annual tier period (``tiers.period_start``, e.g. 08-01) containing it;
- ``cumulative``: every purchase since joining;
- ``validity`` (renew rules only): the validity under review.

**Measures**: ``points`` = points earned by purchases (`Purchase.points`, bonuses such
as the birthday multiplier included; referral and visit points are not purchases and
do not count); ``spend`` = yuan paid (`Purchase.amount`).

**Upgrades** (`evaluate_after_purchase`, called for every recorded purchase): the
highest level above the member's current-or-pending tier with any reach rule met is
the target. With ``stepwise`` (Scheme A, 000 §16 "只能通過普通卡積分到達相應級別升級")
the member moves at most one level per evaluation: a member whose half-year already
covers diamond goes points → gold on one purchase and gold → diamond on the next
purchase that still qualifies. Never a downgrade here. What happens at the target:

============  =============  =======  ==========================================
effective     requires_card  apply    result
============  =============  =======  ==========================================
on_eligible   no             –        tier changes now (TierChange ``upgrade``)
on_eligible   yes            auto     tier changes now + a card application opens
on_eligible   yes            manual   tier changes now + flagged eligible (card not applied)
on_approval   yes            auto     a card application opens (TierChange ``eligible``)
on_approval   yes            manual   flagged eligible (TierChange ``eligible``);
                                      staff apply later (`cards.open_application`)
============  =============  =======  ==========================================

"Flagged eligible" = ``members.eligible_tier/eligible_since``; opening the card
application clears the flag (`eligible_not_applied` lists the flagged members,
003 "監督…累計消費滿5000的顧客是否有未申請銀卡的"). A TierChange with reason
``eligible`` records the day a member qualified; it does not change ``members.tier``.
With ``on_approval`` the tier changes when head office approves the card
(`cards.advance`, reason ``card_approved``). A pending tier (flagged, or an
application not yet approved for an ``on_approval`` level) counts as the member's
tier when the next move is chosen, so qualifying again flags nothing new, and a
rejected application lets the next qualifying purchase flag the member again.

**Validity and review** (`review_tiers`, a daily job): a level with ``valid_months``
holds from ``tier_since`` until ``tier_expires`` (exclusive: on that day it is
reviewed). The validity under review is ``[tier_expires - valid_months,
tier_expires - 1 day]``. If any renew rule is met — ``validity`` sums the whole
validity, ``single_purchase`` takes its biggest receipt, ``cumulative`` counts since
joining, other windows are anchored on the validity's last day — the tier is renewed
for another ``valid_months`` (``tier_since`` keeps the day it was first reached);
otherwise the member drops one level, whose own validity (if any) starts on the old
expiry day. Scheme C reading (004: "valid one year and renew only
if the period's points reach the threshold"): the period is the card's own year of
validity, so the example uses ``window = "validity"``; ``window = "period"`` would
instead read the annual tier period containing the card's last valid day.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache

from sqlalchemy import BigInteger, bindparam, exists, func, literal_column, type_coerce, union_all
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards
from models.calendar import month_bounds
from models.clock import add_months
from models.points import LAPSED, NEXT_EXPIRY, expiry_and_lapsed
from models.rules import LoyaltyRules, Measure, TierLevel, TierRule, TierRules, Window
from models.tables import CardApplication, Member, Purchase, TierChange
from models.types import from_cents

Span = tuple[date | None, date | None]
DAYS_KEPT = 1024
"""Windows remembered per (window, day): pure functions of the calendar, asked for the
same few days on every "积分" (today, the days of the member's oldest purchases)."""

# --------------------------------------------------------------------------- windows (pure)


def day_window(day: date) -> tuple[date, date]:
    return day, day


@lru_cache(maxsize=DAYS_KEPT)
def half_year_window(day: date) -> tuple[date, date]:
    """The 6 calendar months ending on `day`: 2026-08-15 → 2026-02-16 .. 2026-08-15."""
    return add_months(day, -6) + timedelta(days=1), day


def period_window(day: date, period_start: str) -> tuple[date, date]:
    """The annual period starting on `period_start` (MM-DD) that contains `day`.

    With 08-01: 2026-03-10 → 2025-08-01 .. 2026-07-31. A start past a month's end
    (02-29) falls on the month's last day.
    """
    month, dom = (int(p) for p in period_start.split("-"))
    start = _same_mmdd(day.year, month, dom)
    if start > day:
        start = _same_mmdd(day.year - 1, month, dom)
    end = _same_mmdd(start.year + 1, month, dom) - timedelta(days=1)
    return start, end


def validity_window(expires: date, valid_months: int) -> tuple[date, date]:
    """The validity that ends the day before `expires`."""
    return add_months(expires, -valid_months), expires - timedelta(days=1)


@lru_cache(maxsize=DAYS_KEPT)
def window_span(window: Window, anchor: date, *, period_start: str) -> Span:
    """The days a window covers around its anchor day (None = open-ended).

    ``single_purchase`` and ``day`` cover the anchor day only; ``cumulative`` is
    unbounded before and after; ``validity`` is not a calendar window (see
    `validity_window`) and is refused here.
    """
    if window in ("single_purchase", "day"):
        return day_window(anchor)
    if window == "month":
        return month_bounds(anchor)
    if window == "half_year":
        return half_year_window(anchor)
    if window == "period":
        return period_window(anchor, period_start)
    if window == "cumulative":
        return None, None
    raise ValueError(f"window {window!r} needs a validity, not an anchor day")


@lru_cache(maxsize=DAYS_KEPT)
def leaves_half_year_on(day: date) -> date:
    """The first day whose half-year window no longer contains `day`: six months later
    (2026-03-01 → 2026-09-01), or the first of the next month when that month is too
    short for `day` (2026-08-31 → 2027-02-28 still contains it, so 2027-03-01)."""
    probe = add_months(day, 6)
    if add_months(probe, -6) < day:  # clamped to a shorter month's last day
        probe += timedelta(days=1)
    return probe


def _same_mmdd(year: int, month: int, dom: int) -> date:
    """`month`-`dom` of `year`, clamped to the month's last day."""
    return date(year, month, min(dom, calendar.monthrange(year, month)[1]))


# --------------------------------------------------------------------------- measuring


async def measure_total(
    session: AsyncSession,
    *,
    member_id: int,
    measure: Measure,
    span: Span,
    largest: bool = False,
) -> Decimal:
    """Sum (or, with `largest`, the biggest single purchase) of `measure` over `span`.

    Points come back as whole Decimals, spend in yuan (the column holds cents).
    """
    column = Purchase.points if measure == "points" else Purchase.amount
    agg = func.max(column) if largest else func.sum(column)
    stmt = select(type_coerce(func.coalesce(agg, 0), BigInteger())).where(
        Purchase.member_id == member_id
    )
    start, end = span
    if start is not None:
        stmt = stmt.where(Purchase.local_date >= start)
    if end is not None:
        stmt = stmt.where(Purchase.local_date <= end)
    raw = (await session.exec(stmt)).one()
    return Decimal(raw) if measure == "points" else from_cents(raw)


def _of_purchase(purchase: Purchase, what: Measure) -> Decimal:
    return Decimal(purchase.points) if what == "points" else Decimal(purchase.amount)


class _Meter:
    """Measures rules for one evaluation, querying each (measure, span) once."""

    def __init__(self, session: AsyncSession, member_id: int, tiers: TierRules):
        self.session, self.member_id, self.tiers = session, member_id, tiers
        self._cache: dict[tuple, Decimal] = {}

    async def value(self, what: Measure, span: Span, largest: bool = False) -> Decimal:
        key = (what, span, largest)
        if key not in self._cache:
            self._cache[key] = await measure_total(
                self.session, member_id=self.member_id, measure=what, span=span, largest=largest
            )
        return self._cache[key]

    async def reach_met(self, rule: TierRule, purchase: Purchase) -> bool:
        if rule.window == "single_purchase":
            return _of_purchase(purchase, rule.measure) >= rule.threshold
        span = window_span(rule.window, purchase.local_date, period_start=self.tiers.period_start)
        return await self.value(rule.measure, span) >= rule.threshold

    async def renew_met(self, rule: TierRule, validity: tuple[date, date]) -> bool:
        start, last = validity
        if rule.window == "validity":
            value = await self.value(rule.measure, validity)
        elif rule.window == "single_purchase":
            value = await self.value(rule.measure, validity, largest=True)
        elif rule.window == "cumulative":
            value = await self.value(rule.measure, (None, last))
        else:
            span = window_span(rule.window, last, period_start=self.tiers.period_start)
            value = await self.value(rule.measure, span)
        return value >= rule.threshold


# --------------------------------------------------------------------------- upgrades


async def pending_tier(session: AsyncSession, *, rules: LoyaltyRules, member: Member) -> str | None:
    """The highest tier the member is waiting for (flagged eligible, or a card application
    not yet approved) above their effective tier, for levels that take effect on approval
    or still need a card applied for; None if there is none."""
    applications: list[str] = []
    if needs_applications(rules.tiers):
        rows = await session.exec(
            select(CardApplication.tier).where(
                CardApplication.member_id == member.id, col(CardApplication.status).in_(cards.OPEN)
            )
        )
        applications = list(rows)
    return pending_from(
        rules.tiers, tier=member.tier, eligible=member.eligible_tier, applications=applications
    )


def needs_applications(tiers: TierRules) -> bool:
    """Whether an open card application can hold a tier back (some level takes effect on
    approval); if not, `pending_from` needs no applications."""
    return any(level.effective == "on_approval" for level in tiers.levels)


def pending_from(
    tiers: TierRules, *, tier: str, eligible: str | None, applications: Iterable[str]
) -> str | None:
    """`pending_tier` from what it reads: the member's tier and flagged eligible tier, and
    the tiers of their open card applications."""
    best = tiers.index(tier)
    found: str | None = None
    if eligible and tiers.find(eligible) and tiers.index(eligible) > best:
        best, found = tiers.index(eligible), eligible
    for code in applications:
        level = tiers.find(code)
        if level is not None and level.effective == "on_approval" and tiers.index(code) > best:
            best, found = tiers.index(code), code
    return found


async def _base_index(session: AsyncSession, rules: LoyaltyRules, member: Member) -> int:
    pending = await pending_tier(session, rules=rules, member=member)
    return rules.tiers.index(pending if pending else member.tier)


def _set_tier(
    member: Member, level: TierLevel, *, on: date, reason: str, at: datetime, entry: str
) -> TierChange:
    change = TierChange(
        member_id=member.id,
        from_tier=member.tier or entry,
        to_tier=level.code,
        on=on,
        reason=reason,
        at=at,
    )
    member.tier = level.code
    member.tier_since = on
    member.tier_expires = add_months(on, level.valid_months) if level.valid_months else None
    return change


async def evaluate_after_purchase(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    member: Member,
    purchase: Purchase,
    tz: tzinfo | None = None,
) -> TierChange | None:
    """Upgrade (or flag, or apply for) the member after `purchase` has been recorded.

    Call it after the purchase row and its points are written, in the same transaction
    (the purchase path holds the member's row lock). Returns the TierChange recorded
    (reason ``upgrade`` or ``eligible``), or None when nothing changed. Windows are
    reckoned on ``purchase.local_date``, already the brand day, so `tz` is not needed
    and accepted only for callers that pass it.
    """
    tiers = rules.tiers
    base = await _base_index(session, rules, member)
    if base >= len(tiers.levels) - 1:
        return None
    meter = _Meter(session, member.id, tiers)
    reached = base
    for index in range(len(tiers.levels) - 1, base, -1):
        level = tiers.levels[index]
        for rule in level.reach:
            if await meter.reach_met(rule, purchase):
                reached = index
                break
        if reached != base:
            break
    if reached == base:
        return None
    target = tiers.levels[base + 1 if tiers.stepwise else reached]
    on, at = purchase.local_date, purchase.at

    if target.effective == "on_eligible":
        change = _set_tier(member, target, on=on, reason="upgrade", at=at, entry=tiers.entry.code)
    else:
        change = TierChange(
            member_id=member.id,
            from_tier=member.tier or tiers.entry.code,
            to_tier=target.code,
            on=on,
            reason="eligible",
            at=at,
        )
    session.add(member)
    session.add(change)
    if target.requires_card:
        if target.apply == "auto":
            await cards.open_application(
                session,
                member=member,
                tier=target.code,
                actor="system",
                now=at,
                rules=rules,
                store_id=purchase.store_id,
                assistant_id=purchase.assistant_id or member.assistant_id,
                note=f"receipt {purchase.receipt_no}",
            )
        elif not await _has_active_application(session, member.id, target.code):
            member.eligible_tier = target.code
            member.eligible_since = on
            session.add(member)
    await session.flush()
    return change


async def _has_active_application(session: AsyncSession, member_id: int, tier: str) -> bool:
    rows = await session.exec(
        select(CardApplication.id).where(
            CardApplication.member_id == member_id,
            CardApplication.tier == tier,
            col(CardApplication.status).in_(cards.ACTIVE),
        )
    )
    return rows.first() is not None


async def eligible_not_applied(
    session: AsyncSession, *, rules: LoyaltyRules, store_id: int | None = None
) -> list[Member]:
    """Members flagged eligible for a card tier with no card application under way for it
    (DOMAIN.md §3, 003), longest-waiting first; optionally one store's members."""
    codes = [lv.code for lv in rules.tiers.levels if lv.requires_card]
    under_way = exists().where(
        CardApplication.member_id == Member.id,
        CardApplication.tier == Member.eligible_tier,
        col(CardApplication.status).in_(cards.ACTIVE),
    )
    stmt = select(Member).where(col(Member.eligible_tier).in_(codes), ~under_way)
    if store_id is not None:
        stmt = stmt.where(Member.store_id == store_id)
    rows = await session.exec(stmt.order_by(col(Member.eligible_since), col(Member.id)))
    return list(rows)


# --------------------------------------------------------------------------- review


async def review_tiers(
    session: AsyncSession, *, rules: LoyaltyRules, today: date, now: datetime | None = None
) -> list[TierChange]:
    """Renew or lower every tier whose validity ended on or before `today` (a daily job).

    Each ended validity is judged on its own (a missed run catches up one validity
    at a time), so afterwards every reviewed member's ``tier_expires`` is after
    `today` or empty, and a second run on the same day changes nothing. Rows are
    locked (`FOR UPDATE` on PostgreSQL) so two concurrent runs cannot both apply.
    `now` stamps the TierChange rows (default: the time of writing).
    """
    tiers = rules.tiers
    stmt = (
        select(Member)
        .where(col(Member.tier_expires).is_not(None), col(Member.tier_expires) <= today)
        .order_by(col(Member.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    changes: list[TierChange] = []
    for member in list(await session.exec(stmt)):
        meter = _Meter(session, member.id, tiers)
        while member.tier_expires is not None and member.tier_expires <= today:
            change = await _review_one(meter, tiers, member)
            if change is not None:
                if now is not None:
                    change.at = now
                session.add(change)
                changes.append(change)
        session.add(member)
    await session.flush()
    return changes


async def _review_one(meter: _Meter, tiers: TierRules, member: Member) -> TierChange | None:
    expires = member.tier_expires
    level = tiers.find(member.tier)
    if expires is None or level is None or level.valid_months is None:
        member.tier_expires = None  # the rules no longer give this tier an end
        return None
    validity = validity_window(expires, level.valid_months)
    for rule in level.renew:
        if await meter.renew_met(rule, validity):
            member.tier_expires = add_months(expires, level.valid_months)
            return TierChange(
                member_id=member.id,
                from_tier=level.code,
                to_tier=level.code,
                on=expires,
                reason="renewed",
            )
    lower = tiers.levels[tiers.index(level.code) - 1]
    change = TierChange(
        member_id=member.id, from_tier=level.code, to_tier=lower.code, on=expires, reason="lapsed"
    )
    member.tier = lower.code
    member.tier_since = expires
    member.tier_expires = add_months(expires, lower.valid_months) if lower.valid_months else None
    return change


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class RuleProgress:
    """How far a member is from meeting one reach rule, as of `today`.

    - ``counted``: what already counts in the rule's window (0 for ``single_purchase``:
      it takes one receipt of at least the threshold).
    - ``missing``: threshold − counted, never below 0 (points as whole Decimals,
      spend in yuan).
    - ``buy_by``: the last day on which buying ``missing`` is enough: today for ``day``,
      the month's or period's last day, for ``half_year`` the day before the oldest
      counted purchase leaves the window; None when there is no deadline.
    - ``drops_on`` / ``drops``: ``half_year`` only — the day the oldest counted
      purchase(s) leave the window, and how much leaves then (``missing`` grows by it).
    """

    rule: TierRule
    counted: Decimal
    missing: Decimal
    buy_by: date | None = None
    drops_on: date | None = None
    drops: Decimal = Decimal(0)


@dataclass(frozen=True)
class TierProgress:
    """The member's way to the next level (for the chat bot and the points notice).

    ``tier`` is the effective tier, ``pending`` a higher tier waiting for its card
    (then ``next`` is the level above that one), ``rules`` one entry per reach rule
    of ``next``; meeting any one of them is enough.
    """

    tier: str
    pending: str | None
    next: TierLevel
    rules: tuple[RuleProgress, ...]
    today: date | None = None
    """The brand day the progress is as of (`models.tier_nudge` needs it)."""

    @property
    def closest(self) -> RuleProgress:
        """The rule with the least missing (relative to its threshold)."""
        return min(self.rules, key=lambda r: r.missing / r.rule.threshold)


async def tier_progress(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    member: Member,
    today: date,
    tz: tzinfo | None = None,
) -> TierProgress | None:
    """What the member still needs for the next level as of the brand day `today`;
    None at the top level. (`tz` is accepted for symmetry; `today` is already a brand day.)

    It answers the chat bot's "积分", so it reads as little as it can: the pending tier
    looks at card applications only if some level takes effect on approval; calendar
    windows (day, month, half year, period) are summed from one read of the member's
    purchases since the earliest window start (`_Sales`); ``cumulative`` rules add one
    sum each; ``single_purchase`` rules need nothing.
    """
    found = await _next_level(session, rules, member)
    if found is None:
        return None
    start = _earliest_start(rules.tiers, found[1], today)
    sales = await _Sales.load(session, member.id, start, today)
    return await _progress(session, rules.tiers, member, found, sales, today)


async def tier_progress_and_expiry(
    session: AsyncSession, *, rules: LoyaltyRules, member: Member, today: date
) -> tuple[TierProgress | None, tuple[int, date] | None, int]:
    """`tier_progress`, `models.points.expiring_soon` and the points already past their
    last day (not yet expired by the daily job) together, for the chat bot's
    "积分": when the next level has calendar windows, the purchases they need and the
    member's next expiry come back from one statement (UNION ALL) — on this stack a round
    trip costs more CPU than the rest of the answer."""
    found = await _next_level(session, rules, member)
    start = _earliest_start(rules.tiers, found[1], today) if found else None
    if start is None:
        expiry, lapsed = await expiry_and_lapsed(session, member_id=member.id, today=today)
        if found is None:
            return None, expiry, lapsed
        progress = await _progress(session, rules.tiers, member, found, _Sales(), today)
        return progress, expiry, lapsed
    sales, expiry, lapsed = await _Sales.load_with_expiry(session, member.id, start, today)
    return await _progress(session, rules.tiers, member, found, sales, today), expiry, lapsed


async def _next_level(
    session: AsyncSession, rules: LoyaltyRules, member: Member
) -> tuple[str | None, TierLevel] | None:
    """(pending tier, the level above the member's current-or-pending tier); None at the top."""
    tiers = rules.tiers
    pending = await pending_tier(session, rules=rules, member=member)
    base = tiers.index(pending if pending else member.tier)
    if base >= len(tiers.levels) - 1:
        return None
    return pending, tiers.levels[base + 1]


async def _progress(
    session: AsyncSession,
    tiers: TierRules,
    member: Member,
    found: tuple[str | None, TierLevel],
    sales: _Sales,
    today: date,
) -> TierProgress:
    pending, target = found
    progress = [
        await _rule_progress(session, member.id, sales, tiers, rule, today) for rule in target.reach
    ]
    return TierProgress(
        tier=member.tier or tiers.entry.code,
        pending=pending,
        next=target,
        rules=tuple(progress),
        today=today,
    )


def _earliest_start(tiers: TierRules, level: TierLevel, today: date) -> date | None:
    """The first day any calendar window of `level`'s reach rules covers; None if none has one."""
    starts = [
        window_span(rule.window, today, period_start=tiers.period_start)[0]
        for rule in level.reach
        if rule.window not in ("single_purchase", "cumulative")
    ]
    return min((d for d in starts if d is not None), default=None)


def sales_start(tiers: TierRules, today: date) -> date | None:
    """The first day any calendar window of any level's reach rules covers: purchases from
    there to `today` are enough for `progress_from_sales`, whatever the member's tier."""
    starts = [_earliest_start(tiers, level, today) for level in tiers.levels]
    return min((d for d in starts if d is not None), default=None)


def needs_totals(tiers: TierRules) -> bool:
    """Whether some reach rule counts since joining (`cumulative`): then progress needs a
    sum over all purchases, which `progress_from_sales` does not have."""
    return any(rule.window == "cumulative" for level in tiers.levels for rule in level.reach)


def progress_from_sales(
    tiers: TierRules,
    *,
    tier: str,
    pending: str | None,
    sales: Iterable[tuple[date, int, int]],
    today: date,
) -> TierProgress | None:
    """`tier_progress` from what it reads, without a session: the member's tier, their
    pending tier (`pending_from`) and their purchases as (brand day, points, cents) from
    at least `sales_start` to `today`. Only for rules without cumulative windows
    (`needs_totals` false)."""
    base = tiers.index(pending if pending else tier)
    if base >= len(tiers.levels) - 1:
        return None
    target = tiers.levels[base + 1]
    rows = _Sales(tuple(sales))
    return TierProgress(
        tier=tier or tiers.entry.code,
        pending=pending,
        next=target,
        rules=tuple(_window_progress(rows, tiers, rule, today) for rule in target.reach),
        today=today,
    )


# Built once (`tier_progress` answers the chat bot's "积分"); parameters member_id, start,
# today. The UNION ALL adds the next expiry (`models.points.NEXT_EXPIRY`) as a "lot" row.
_SALES = select(
    literal_column("'sale'"),
    Purchase.local_date,
    Purchase.points,
    type_coerce(Purchase.amount, BigInteger()),
).where(
    Purchase.member_id == bindparam("member_id"),
    Purchase.local_date >= bindparam("start"),
    Purchase.local_date <= bindparam("today"),
)
_EXPIRY = NEXT_EXPIRY.subquery()
_SALES_AND_EXPIRY = union_all(
    _SALES,
    select(literal_column("'lot'"), _EXPIRY.c.day, _EXPIRY.c.points, literal_column("0")),
    select(literal_column("'lapsed'"), literal_column("NULL"), LAPSED, literal_column("0")),
)


@dataclass(frozen=True)
class _Sales:
    """One member's purchases from a start day to `today`: (brand day, points, cents) each.

    Every calendar window of a progress report lies in that range (`_earliest_start`), so
    its totals and oldest counted day come from this one read instead of a query each.
    """

    rows: tuple[tuple[date, int, int], ...] = ()

    @classmethod
    async def load(
        cls, session: AsyncSession, member_id: int, start: date | None, today: date
    ) -> _Sales:
        if start is None:
            return cls()
        params = {"member_id": member_id, "start": start, "today": today}
        rows = await session.exec(_SALES, params=params)
        return cls(tuple((day, points or 0, cents or 0) for _, day, points, cents in rows))

    @classmethod
    async def load_with_expiry(
        cls, session: AsyncSession, member_id: int, start: date, today: date
    ) -> tuple[_Sales, tuple[int, date] | None, int]:
        """The purchases, (points, day) of the next expiry like `expiring_soon`, and the
        points already past their last day (`models.points.expiry_and_lapsed`)."""
        params = {"member_id": member_id, "start": start, "today": today}
        rows: list[tuple[date, int, int]] = []
        expiry: tuple[int, date] | None = None
        lapsed = 0
        for kind, day, points, cents in await session.exec(_SALES_AND_EXPIRY, params=params):
            if kind == "lot":
                expiry = (int(points), day)
            elif kind == "lapsed":
                lapsed = int(points or 0)
            else:
                rows.append((day, points or 0, cents or 0))
        return cls(tuple(rows)), expiry, lapsed

    def total(self, what: Measure, start: date, end: date) -> Decimal:
        """Like `measure_total` over [start, end]: whole points, or yuan."""
        i = 1 if what == "points" else 2
        raw = sum(row[i] for row in self.rows if start <= row[0] <= end)
        return Decimal(raw) if what == "points" else from_cents(raw)

    def oldest(self, what: Measure, start: date, end: date) -> date | None:
        """The first day in [start, end] with a purchase that counts (above 0)."""
        i = 1 if what == "points" else 2
        return min(
            (row[0] for row in self.rows if start <= row[0] <= end and row[i] > 0), default=None
        )


async def _rule_progress(
    session: AsyncSession,
    member_id: int,
    sales: _Sales,
    tiers: TierRules,
    rule: TierRule,
    today: date,
) -> RuleProgress:
    if rule.window == "cumulative":
        counted = await measure_total(
            session, member_id=member_id, measure=rule.measure, span=(None, None)
        )
        missing = max(rule.threshold - counted, Decimal(0))
        return RuleProgress(rule=rule, counted=counted, missing=missing)
    return _window_progress(sales, tiers, rule, today)


def _window_progress(sales: _Sales, tiers: TierRules, rule: TierRule, today: date) -> RuleProgress:
    """Progress on a rule that is not ``cumulative``, from the member's purchases."""
    if rule.window == "single_purchase":
        return RuleProgress(rule=rule, counted=Decimal(0), missing=rule.threshold)
    start, end = window_span(rule.window, today, period_start=tiers.period_start)
    counted = sales.total(rule.measure, start, today)  # only what has happened so far counts
    missing = max(rule.threshold - counted, Decimal(0))
    if rule.window != "half_year":
        return RuleProgress(rule=rule, counted=counted, missing=missing, buy_by=end)
    oldest = sales.oldest(rule.measure, start, today)
    if oldest is None:
        return RuleProgress(rule=rule, counted=counted, missing=missing)
    drops_on = leaves_half_year_on(oldest)
    still = sales.total(rule.measure, half_year_window(drops_on)[0], today)
    return RuleProgress(
        rule=rule,
        counted=counted,
        missing=missing,
        buy_by=drops_on - timedelta(days=1),
        drops_on=drops_on,
        drops=counted - still,
    )
