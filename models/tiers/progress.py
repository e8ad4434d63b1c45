"""Tier progress: what a member still needs for the next level (`progress_from_sales`),
from the purchases, pending tier and sums that `models.tiers.facts` reads for the chat
bot's "积分" — one read on both of its paths."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from models.rules import Measure, TierLevel, TierRule, TierRules
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
    sum over all purchases (`progress_from_sales`'s `totals`), one more statement each."""
    return any(rule.window == "cumulative" for level in tiers.levels for rule in level.reach)


def next_level(tiers: TierRules, *, tier: str, pending: str | None) -> TierLevel | None:
    """The level above the member's current-or-pending tier; None at the top."""
    base = tiers.index(pending if pending else tier)
    if base >= len(tiers.levels) - 1:
        return None
    return tiers.levels[base + 1]


def progress_from_sales(
    tiers: TierRules,
    *,
    tier: str,
    pending: str | None,
    sales: Iterable[tuple[date, int, int]],
    today: date,
    totals: Mapping[Measure, Decimal] | None = None,
) -> TierProgress | None:
    """What the member still needs for the next level as of the brand day `today`; None
    at the top level. From what is read (`models.tiers.facts`): the member's tier, their
    pending tier (`pending_from`), their purchases as (brand day, points, cents) from at
    least `sales_start` to `today` and, for ``cumulative`` rules, their sums since
    joining (`totals`, whole points or yuan by measure)."""
    target = next_level(tiers, tier=tier, pending=pending)
    if target is None:
        return None
    rows = _Sales(tuple(sales))
    return TierProgress(
        tier=tier or tiers.entry.code,
        pending=pending,
        next=target,
        rules=tuple(_rule_progress(rows, tiers, rule, today, totals) for rule in target.reach),
        today=today,
    )


@dataclass(frozen=True)
class _Sales:
    """One member's purchases from a start day to `today`: (brand day, points, cents) each.

    Every calendar window of a progress report lies in that range (`sales_start`), so
    its totals and oldest counted day come from this one read instead of a query each.
    """

    rows: tuple[tuple[date, int, int], ...] = ()

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


def _rule_progress(
    sales: _Sales,
    tiers: TierRules,
    rule: TierRule,
    today: date,
    totals: Mapping[Measure, Decimal] | None,
) -> RuleProgress:
    if rule.window == "cumulative":
        if totals is None or rule.measure not in totals:
            raise ValueError(f"cumulative {rule.measure} rule without its total")
        counted = totals[rule.measure]
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
