"""Birthdays and yearly days, solar and lunar (models/calendar.py)."""

from datetime import date, timedelta

import pytest

from models.calendar import (
    LUNAR,
    SOLAR,
    birthday_in_year,
    is_birthday,
    month_bounds,
    next_occurrence,
    occurrences_between,
    yearly_days_between,
    yearly_days_on,
)


def _days(start: date, end: date):
    d = start
    while d <= end:
        yield d
        d += timedelta(days=1)


def test_known_lunar_dates():
    assert birthday_in_year(2026, month=8, day=15, calendar="lunar") == date(2026, 9, 25)
    assert birthday_in_year(2027, month=1, day=1, calendar="lunar") == date(2027, 2, 6)
    assert is_birthday(date(2026, 9, 25), month=8, day=15, calendar="lunar")
    assert not is_birthday(date(2026, 9, 24), month=8, day=15, calendar="lunar")
    assert is_birthday(date(2027, 2, 6), month=1, day=1, calendar="lunar")


def test_solar_birthday():
    assert is_birthday(date(2026, 5, 20), month=5, day=20)
    assert not is_birthday(date(2026, 5, 21), month=5, day=20)
    assert not is_birthday(date(2026, 6, 20), month=5, day=20)
    assert birthday_in_year(2026, month=5, day=20) == date(2026, 5, 20)


def test_29_february_in_common_and_leap_years():
    # 2026 is a common year: celebrated on 28 February.
    assert birthday_in_year(2026, month=2, day=29) == date(2026, 2, 28)
    assert is_birthday(date(2026, 2, 28), month=2, day=29)
    assert not is_birthday(date(2026, 3, 1), month=2, day=29)
    # 2028 is a leap year: 29 February only.
    assert birthday_in_year(2028, month=2, day=29) == date(2028, 2, 29)
    assert is_birthday(date(2028, 2, 29), month=2, day=29)
    assert not is_birthday(date(2028, 2, 28), month=2, day=29)
    # 2100 is not a leap year (century rule).
    assert birthday_in_year(2100, month=2, day=29) == date(2100, 2, 28)


def test_lunar_30th_in_a_29_day_month_falls_on_the_29th():
    # In lunar 2026 the 2nd month has 29 days, in lunar 2027 it has 30.
    assert birthday_in_year(2026, month=2, day=30, calendar="lunar") == birthday_in_year(
        2026, month=2, day=29, calendar="lunar"
    )
    d2026 = birthday_in_year(2026, month=2, day=30, calendar="lunar")
    assert is_birthday(d2026, month=2, day=30, calendar="lunar")
    assert is_birthday(d2026, month=2, day=29, calendar="lunar")  # both celebrate that day
    d2027_30 = birthday_in_year(2027, month=2, day=30, calendar="lunar")
    d2027_29 = birthday_in_year(2027, month=2, day=29, calendar="lunar")
    assert d2027_30 == d2027_29 + timedelta(days=1)
    assert not is_birthday(d2027_29, month=2, day=30, calendar="lunar")


def test_born_in_a_leap_month_celebrates_in_the_regular_month():
    # Lunar 2023 has a leap 2nd month; lunar 2026 has none.
    regular = birthday_in_year(2026, month=2, day=10, calendar="lunar")
    assert birthday_in_year(2026, month=2, day=10, calendar="lunar", leap_month=True) == regular
    assert is_birthday(regular, month=2, day=10, calendar="lunar", leap_month=True)
    # In 2023 (leap 2nd month present) still only the regular month counts.
    hits = [
        d
        for d in _days(date(2023, 1, 1), date(2023, 12, 31))
        if is_birthday(d, month=2, day=10, calendar="lunar", leap_month=True)
    ]
    assert hits == [birthday_in_year(2023, month=2, day=10, calendar="lunar")]


def test_regular_month_birthday_is_not_repeated_in_the_leap_month():
    # Lunar 2025 repeats the 6th month as a leap month: one celebration only.
    hits = [
        d
        for d in _days(date(2025, 1, 1), date(2026, 1, 31))
        if is_birthday(d, month=6, day=5, calendar="lunar")
    ]
    assert hits == [birthday_in_year(2025, month=6, day=5, calendar="lunar")]
    assert hits[0] == date(2025, 6, 29)


def test_lunar_year_rule_for_late_months():
    # Lunar 12th month of lunar year 2026 falls in Gregorian 2027.
    d = birthday_in_year(2026, month=12, day=10, calendar="lunar")
    assert d.year == 2027
    assert is_birthday(d, month=12, day=10, calendar="lunar")


def test_occurrences_between_can_hold_two_lunar_dates_in_one_gregorian_year():
    # Lunar 11-20 of lunar 2025 is in January 2026 and that of lunar 2026 in December 2026.
    hits = occurrences_between(
        date(2026, 1, 1), date(2026, 12, 31), month=11, day=20, calendar="lunar"
    )
    assert len(hits) == 2
    assert hits[0].month == 1 and hits[1].month == 12
    assert all(is_birthday(d, month=11, day=20, calendar="lunar") for d in hits)
    assert occurrences_between(date(2026, 5, 1), date(2026, 5, 31), month=5, day=20) == [
        date(2026, 5, 20)
    ]


def test_next_occurrence():
    assert next_occurrence(date(2026, 9, 26), month=8, day=15, calendar="lunar").year == 2027
    assert next_occurrence(date(2026, 9, 25), month=8, day=15, calendar="lunar") == date(
        2026, 9, 25
    )
    assert next_occurrence(date(2026, 3, 1), month=2, day=29) == date(2027, 2, 28)


def test_outside_the_lunar_table():
    assert birthday_in_year(2100, month=1, day=1, calendar="lunar") is None
    assert not is_birthday(date(2101, 3, 1), month=1, day=20, calendar="lunar")


@pytest.mark.parametrize(
    "month, day, calendar",
    [(13, 1, "solar"), (0, 1, "solar"), (1, 32, "solar"), (1, 31, "lunar"), (1, 1, "julian")],
)
def test_bad_input_is_refused(month, day, calendar):
    with pytest.raises(ValueError):
        is_birthday(date(2026, 1, 1), month=month, day=day, calendar=calendar)


# --------------------------------------------------------------------------- the reverse rules


def test_yearly_days_on_agree_with_is_birthday():
    """The (month, day) pairs a query reads members by are exactly the days `is_birthday`
    celebrates, every day of 2025 (a lunar leap 6th month) and both Februaries."""
    for day in _days(date(2025, 1, 1), date(2026, 2, 28)):
        solar, lunar = set(yearly_days_on(day, SOLAR)), set(yearly_days_on(day, LUNAR))
        for month in range(1, 13):
            for dom in range(1, 31):
                assert ((month, dom) in lunar) == is_birthday(
                    day, month=month, day=dom, calendar=LUNAR
                ), (day, month, dom)
            for dom in range(1, 32):
                assert ((month, dom) in solar) == is_birthday(
                    day, month=month, day=dom, calendar=SOLAR
                ), (day, month, dom)


def test_yearly_days_on_refuses_an_unknown_calendar():
    with pytest.raises(ValueError):
        yearly_days_on(date(2026, 1, 1), "julian")


def _by_occurrence(start: date, end: date, calendar: str) -> dict[int, list[int]]:
    """Month → days whose yearly day has an occurrence in start..end, by brute force."""
    out: dict[int, list[int]] = {}
    for month in range(1, 13):
        for dom in range(1, 31 if calendar == LUNAR else 32):
            if occurrences_between(start, end, month=month, day=dom, calendar=calendar):
                out.setdefault(month, []).append(dom)
    return out


@pytest.mark.parametrize(
    "start,end",
    [
        (date(2027, 2, 1), date(2027, 2, 28)),  # common year: 29-31 Feb on the 28th
        (date(2028, 2, 1), date(2028, 2, 29)),  # leap year
        (date(2026, 12, 20), date(2027, 1, 10)),  # December into January
        (date(2025, 7, 1), date(2025, 8, 31)),  # the lunar leap 6th month of 2025
        (date(2026, 3, 19), date(2026, 3, 19)),  # one day
        (date(2026, 1, 1), date(2026, 12, 31)),  # a whole year
    ],
)
@pytest.mark.parametrize("calendar", [SOLAR, LUNAR])
def test_yearly_days_between_is_every_day_with_an_occurrence(start, end, calendar):
    assert yearly_days_between(start, end, calendar) == _by_occurrence(start, end, calendar)


def test_yearly_days_between_edges():
    feb = yearly_days_between(date(2027, 2, 1), date(2027, 2, 28), SOLAR)
    assert feb == {2: list(range(1, 32))}  # 29 Feb (and 30, 31) on 28 Feb of a common year
    assert yearly_days_between(date(2027, 2, 28), date(2027, 2, 28), SOLAR) == {2: [28, 29, 30, 31]}
    assert yearly_days_between(date(2028, 2, 28), date(2028, 2, 28), SOLAR) == {2: [28]}
    assert yearly_days_between(date(2026, 12, 30), date(2027, 1, 2), SOLAR) == {
        1: [1, 2],
        12: [30, 31],
    }
    assert yearly_days_between(date(2026, 5, 2), date(2026, 5, 1), SOLAR) == {}


def test_month_bounds():
    assert month_bounds(date(2027, 2, 10)) == (date(2027, 2, 1), date(2027, 2, 28))
    assert month_bounds(date(2028, 2, 29)) == (date(2028, 2, 1), date(2028, 2, 29))
    assert month_bounds(date(2026, 12, 31), ahead=1) == (date(2027, 1, 1), date(2027, 1, 31))
    assert month_bounds(date(2028, 1, 31), ahead=1) == (date(2028, 2, 1), date(2028, 2, 29))
    assert month_bounds(date(2027, 1, 15), ahead=-1) == (date(2026, 12, 1), date(2026, 12, 31))
    assert month_bounds(date(2026, 11, 30), ahead=14) == (date(2028, 1, 1), date(2028, 1, 31))
