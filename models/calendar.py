"""Birthdays and other yearly days, solar or lunar (DOMAIN.md §1, §2, §7.5).

Members keep a birthday (and a wedding anniversary, a join date) as a month and
a day, on the Gregorian (``solar``) or the Chinese lunar (``lunar``) calendar
(DOMAIN.md §7.5: "many members keep a lunar birthday"). The rules for the days
that do not exist every year:

- Solar 29 February: in a common year the day is celebrated on 28 February.
  More generally a solar day beyond the month's end (e.g. 04-31) falls on the
  month's last day.
- Lunar day 30 in a year whose lunar month has only 29 days: celebrated on the
  month's last day (the 29th).
- Born in a lunar leap month (e.g. the leap 4th month): celebrated in the
  regular month of that number every year (the leap month recurs only every few
  years), so ``leap_month`` does not change the day.
- Born in a regular lunar month: celebrated only in the regular month, never
  again when that month is repeated as a leap month in the same lunar year.

`birthday_in_year(year, …)` returns the day in Gregorian year ``year`` for solar
days. For lunar days it returns the occurrence in the **lunar year that starts
in Gregorian year ``year``** (lunar year 2026 begins on 2026-02-17), so there is
always exactly one answer; for lunar months 11 and 12 that date may fall in
January or February of ``year + 1``. To list the occurrences inside any
Gregorian date range (e.g. "next month's birthdays", DOMAIN.md §6) use
`occurrences_between`. `is_birthday(d, …)` is true exactly on those dates.

The same rules the other way round, for reading members by an indexed (month, day):
`yearly_days_on(d, calendar)` lists the (month, day) pairs celebrated on Gregorian
``d`` (on 28 February of a common year: 28, 29, 30 and 31 February), and
`yearly_days_between(start, end, calendar)` the pairs of a whole range, by month
(the planner's one day, the staff's month-end list). `month_bounds(d, ahead=n)` is
the first and last day of the calendar month ``n`` months after ``d``'s.

Lunar conversions use `lunardate`, which covers lunar years 1900-2099; outside
it a lunar day has no occurrence (`is_birthday` is false, `birthday_in_year`
returns None).
"""

from __future__ import annotations

import calendar as _gregorian
from datetime import date, timedelta

from lunardate import LunarDate

SOLAR = "solar"
LUNAR = "lunar"
CALENDARS = (SOLAR, LUNAR)
_LUNAR_YEARS = range(1900, 2100)


def _check(month: int, day: int, calendar: str) -> None:
    if calendar not in CALENDARS:
        raise ValueError(f"calendar must be 'solar' or 'lunar', not {calendar!r}")
    if not 1 <= month <= 12:
        raise ValueError(f"month out of range: {month}")
    if not 1 <= day <= (30 if calendar == LUNAR else 31):
        raise ValueError(f"day out of range: {day}")


def _solar_in_year(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, _gregorian.monthrange(year, month)[1]))


def _lunar_in_year(lunar_year: int, month: int, day: int) -> date | None:
    """The regular lunar month `month` of `lunar_year`, day clamped to the month's length."""
    if lunar_year not in _LUNAR_YEARS:
        return None
    try:
        return LunarDate(lunar_year, month, day).to_solar_date()
    except ValueError:
        # Only day 30 can be out of range: the month has 29 days this year.
        return LunarDate(lunar_year, month, 29).to_solar_date()


def birthday_in_year(
    year: int, *, month: int, day: int, calendar: str = SOLAR, leap_month: bool = False
) -> date | None:
    """The Gregorian date of the yearly day for `year` (see the module rules).

    Solar: the day in Gregorian year `year`. Lunar: the day in the lunar year
    starting in Gregorian year `year` (may fall early in `year + 1`); None
    outside the lunar table. `leap_month` is accepted for completeness: a
    leap-month birthday is kept in the regular month of that number.
    """
    _check(month, day, calendar)
    if calendar == SOLAR:
        return _solar_in_year(year, month, day)
    return _lunar_in_year(year, month, day)


def is_birthday(
    on: date, *, month: int, day: int, calendar: str = SOLAR, leap_month: bool = False
) -> bool:
    """True if the yearly day (`month`/`day` on `calendar`) is celebrated on Gregorian `on`."""
    _check(month, day, calendar)
    if calendar == SOLAR:
        return on == _solar_in_year(on.year, month, day)
    try:
        lunar = LunarDate.from_solar_date(on.year, on.month, on.day)
    except ValueError:  # outside the lunar table
        return False
    if lunar.is_leap_month or lunar.month != month:
        return False
    return on == _lunar_in_year(lunar.year, month, day)


def occurrences_between(
    start: date,
    end: date,
    *,
    month: int,
    day: int,
    calendar: str = SOLAR,
    leap_month: bool = False,
) -> list[date]:
    """Every date in `start`..`end` (both included) on which the yearly day falls, in order.

    A Gregorian year can hold zero, one or two lunar occurrences (late lunar
    months straddle New Year), hence a list.
    """
    _check(month, day, calendar)
    found: list[date] = []
    # A lunar year starts in January or February of the Gregorian year of the same
    # number, so lunar year y - 1 can still reach into Gregorian year y.
    for year in range(start.year - 1, end.year + 1):
        d = birthday_in_year(year, month=month, day=day, calendar=calendar)
        if d is not None and start <= d <= end:
            found.append(d)
    return found


def next_occurrence(
    after: date, *, month: int, day: int, calendar: str = SOLAR, leap_month: bool = False
) -> date | None:
    """The first date on or after `after` on which the yearly day falls (None past the table)."""
    hits = occurrences_between(
        after, after + timedelta(days=400), month=month, day=day, calendar=calendar
    )
    return hits[0] if hits else None


def month_bounds(day: date, *, ahead: int = 0) -> tuple[date, date]:
    """The first and last day of the calendar month `ahead` months after `day`'s (0: its
    own month; December + 1 is January of the next year)."""
    year, month0 = divmod(day.year * 12 + day.month - 1 + ahead, 12)
    month = month0 + 1
    return date(year, month, 1), date(year, month, _gregorian.monthrange(year, month)[1])


def _solar_days(day: date) -> list[tuple[int, int]]:
    pairs = [(day.month, day.day)]
    if (day + timedelta(days=1)).month != day.month:  # the month's last day
        pairs += [(day.month, d) for d in range(day.day + 1, 32)]
    return pairs


def _lunar_days(day: date) -> list[tuple[int, int]]:
    try:
        lunar = LunarDate.from_solar_date(day.year, day.month, day.day)
    except ValueError:  # outside the lunar table
        return []
    if lunar.is_leap_month:
        return []
    pairs = [(lunar.month, lunar.day)]
    if lunar.day == 29:
        try:
            LunarDate(lunar.year, lunar.month, 30).to_solar_date()
        except ValueError:  # a 29-day month: day 30 falls on its 29th
            pairs.append((lunar.month, 30))
    return pairs


def yearly_days_on(day: date, calendar: str) -> list[tuple[int, int]]:
    """The (month, day) pairs on `calendar` whose yearly day is celebrated on Gregorian
    `day` (exactly those for which `is_birthday` is true). Solar: the day's own, plus
    the days past the month's end when `day` is its last (29 Feb → 28 Feb). Lunar: none
    inside a leap month; day 30 on the 29th of a 29-day month."""
    if calendar == SOLAR:
        return _solar_days(day)
    if calendar == LUNAR:
        return _lunar_days(day)
    raise ValueError(f"calendar must be 'solar' or 'lunar', not {calendar!r}")


def yearly_days_between(start: date, end: date, calendar: str) -> dict[int, list[int]]:
    """Month → days (ascending) of the yearly days on `calendar` celebrated within
    `start`..`end` (both included): `yearly_days_on` over every day of the range."""
    found: set[tuple[int, int]] = set()
    day = start
    while day <= end:
        found.update(yearly_days_on(day, calendar))
        day += timedelta(days=1)
    out: dict[int, list[int]] = {}
    for month, dom in sorted(found):
        out.setdefault(month, []).append(dom)
    return out
