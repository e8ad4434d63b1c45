"""When an assistant's greeting for a date-tied occasion may go: near the occasion.

`POST /api/greetings`, `memberbot greet` and the staff console all go through
`scheduler.greetings`, which asks `occasion_refusal` before anything else is decided.
An occasion tied to a date is accepted only when that date falls within
``[greetings] occasion_window_days`` (default 3) days before or after the greeting's
sending day (its brand day after quiet hours):

- ``birthday``: the member's birthday, solar or lunar, by the planner's calendar
  rules (`models.calendar`: 29 Feb on 28 Feb in common years, lunar day 30 on the
  29th of a short month, a leap-month birthday in the regular month);
- ``wedding_anniversary``: the wedding day's month and day (solar), from the first
  anniversary when the year is on file;
- ``join_anniversary``: the join date's month and day, from the first anniversary;
- ``holiday``: one of the configured festivals (`[occasions]`);
- ``seasonal``: one of the configured season-start terms.

``dormant``, ``personal_greeting`` and ``other`` are not tied to a date. A refusal
names why (no birthday on file; the nearest occurrence), as `GreetingRefused`
(422, field ``occasion``).
"""

from __future__ import annotations

from datetime import date, timedelta

from models.calendar import SOLAR, occurrences_between
from models.occasions import festivals_on, season_start_on
from models.settings import Settings
from models.tables.members import Member

NOT_NEAR_OCCASION = "not_near_occasion"
DATE_TIED = ("birthday", "wedding_anniversary", "join_anniversary", "holiday", "seasonal")


def _days(day: date, window: int) -> list[date]:
    return [day + timedelta(days=n) for n in range(-window, window + 1)]


def _yearly(
    day: date, window: int, month: int, dom: int, calendar: str, after_year: int | None
) -> list[date]:
    hits = occurrences_between(
        day - timedelta(days=window), day + timedelta(days=window),
        month=month, day=dom, calendar=calendar,
    )  # fmt: skip
    return [d for d in hits if after_year is None or d.year > after_year]


def occasion_refusal(occasion: str, *, member: Member, day: date, settings: Settings) -> str | None:
    """Why a greeting for `occasion` may not go to `member` on brand day `day`; None: it may."""
    if occasion not in DATE_TIED:
        return None
    window = settings.greetings.occasion_window_days
    around = f"within {window} days of {day.isoformat()}"
    if occasion == "birthday":
        if member.birthday_month is None or member.birthday_day is None:
            return "the member has no birthday on file"
        calendar = member.birthday_calendar or SOLAR
        m, d = member.birthday_month, member.birthday_day
        if _yearly(day, window, m, d, calendar, None):
            return None
        return f"the member's {calendar} birthday ({m:02d}-{d:02d}) is not {around}"
    if occasion == "wedding_anniversary":
        if member.wedding_month is None or member.wedding_day is None:
            return "the member has no wedding anniversary on file"
        m, d = member.wedding_month, member.wedding_day
        if _yearly(day, window, m, d, SOLAR, member.wedding_year):
            return None
        return f"the member's wedding anniversary ({m:02d}-{d:02d}) is not {around}"
    if occasion == "join_anniversary":
        joined = member.join_date
        if _yearly(day, window, joined.month, joined.day, SOLAR, joined.year):
            return None
        mmdd = f"{joined.month:02d}-{joined.day:02d}"
        return f"the member's join anniversary ({mmdd}) is not {around}"
    occasions = settings.occasions
    if occasion == "holiday":
        rules = occasions.festival_rules()
        if any(festivals_on(d, rules) for d in _days(day, window)):
            return None
        return f"no configured festival is {around}"
    terms, tz = occasions.season_terms, settings.brand.tz
    if any(season_start_on(d, terms=terms, tz=tz) for d in _days(day, window)):
        return None
    return f"no season-start day is {around}"
