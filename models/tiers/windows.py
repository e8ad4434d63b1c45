"""Tier windows: the brand days a reach or renew rule sums over (pure calendar functions;
the windows are described in `models.tiers`)."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from functools import lru_cache

from models.calendar import month_bounds
from models.clock import add_months
from models.rules import Window

Span = tuple[date | None, date | None]
DAYS_KEPT = 1024
"""Windows remembered per (window, day): pure functions of the calendar, asked for the
same few days on every "积分" (today, the days of the member's oldest purchases)."""


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
