"""Tier progress: what a member still needs for the next level (`tier_progress`), read
with their next points expiry for the chat bot's "积分" (`tier_progress_and_expiry`), or
computed without a session by the quick path (`progress_from_sales`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from decimal import Decimal

from sqlalchemy import BigInteger, bindparam, literal_column, type_coerce, union_all
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.points_reads import LAPSED, NEXT_EXPIRY, expiry_and_lapsed
from models.rules import LoyaltyRules, Measure, TierLevel, TierRule, TierRules
from models.tables import Member, Purchase
from models.tiers.meter import measure_total
from models.tiers.upgrade import pending_tier
from models.tiers.windows import half_year_window, leaves_half_year_on, window_span
from models.types import from_cents


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
    """The brand day the progress is as of (`models.tiers.nudge` needs it)."""

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
    """`tier_progress`, `models.points_reads.expiring_soon` and the points already past their
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
# today. The UNION ALL adds the next expiry (`models.points_reads.NEXT_EXPIRY`) as a "lot" row.
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
        points already past their last day (`models.points_reads.expiry_and_lapsed`)."""
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
