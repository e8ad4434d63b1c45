"""Festivals and season starts (DOMAIN.md §7.3, §7.5): pure functions of explicit dates."""

from __future__ import annotations

from datetime import date, timedelta

import holidays
import pytest
from lunardate import LunarDate

from models.occasions import (
    DEFAULT_FESTIVALS,
    FestivalRule,
    OccasionSettings,
    festivals_on,
    season_start_on,
    solar_terms,
)
from models.settings.load import ConfigError, load_settings

ONE_DAY = timedelta(days=1)


def codes(d: date, rules=DEFAULT_FESTIVALS) -> list[str]:
    return [f.code for f in festivals_on(d, rules)]


def days_of(year: int):
    d = date(year, 1, 1)
    while d.year == year:
        yield d
        d += ONE_DAY


FESTIVAL_DAYS = [
    (date(2026, 1, 1), "new_year"),
    (date(2026, 2, 17), "spring_festival"),
    (date(2026, 3, 3), "lantern"),
    (date(2026, 6, 19), "dragon_boat"),
    (date(2026, 8, 19), "qixi"),
    (date(2026, 9, 25), "mid_autumn"),
    (date(2026, 10, 18), "double_ninth"),
    (date(2026, 10, 1), "national_day"),
    (date(2027, 1, 1), "new_year"),
    (date(2027, 2, 6), "spring_festival"),
    (date(2027, 2, 20), "lantern"),
    (date(2027, 6, 9), "dragon_boat"),
    (date(2027, 8, 8), "qixi"),
    (date(2027, 9, 15), "mid_autumn"),
    (date(2027, 10, 8), "double_ninth"),
    (date(2027, 10, 1), "national_day"),
]


@pytest.mark.parametrize(("day", "code"), FESTIVAL_DAYS)
def test_festival_on_its_day_and_not_the_day_before_or_after(day, code):
    assert codes(day) == [code]
    assert code not in codes(day - ONE_DAY)
    assert code not in codes(day + ONE_DAY)


def test_festival_carries_its_names_and_date():
    (festival,) = festivals_on(date(2026, 9, 25), DEFAULT_FESTIVALS)
    assert (festival.name("zh_CN"), festival.name("en")) == ("中秋节", "Mid-Autumn Festival")
    assert festival.on == date(2026, 9, 25) and festival.calendar == "lunar"


@pytest.mark.parametrize("year", [2023, 2024, 2025, 2026, 2027])
def test_every_default_festival_falls_exactly_once_a_year(year):
    """2023 (leap 2nd month) and 2025 (leap 6th month) included."""
    seen = [c for d in days_of(year) for c in codes(d)]
    assert sorted(seen) == sorted(r.code for r in DEFAULT_FESTIVALS)


@pytest.mark.parametrize("year", range(2024, 2031))
def test_lunar_festivals_agree_with_the_public_holiday_calendar(year):
    official = holidays.China(years=year, language="en_US")

    def first(name: str) -> date:
        return min(d for d, n in official.items() if n.startswith(name))

    assert codes(first("Chinese New Year (Spring Festival)")) == ["spring_festival"]
    assert codes(first("Dragon Boat Festival")) == ["dragon_boat"]
    assert codes(first("Mid-Autumn Festival")) == ["mid_autumn"]


@pytest.mark.parametrize(
    ("year", "month", "day", "regular", "leap_repeat"),
    [
        (2025, 6, 6, date(2025, 6, 30), date(2025, 7, 30)),  # 2025 repeats the 6th month
        (2023, 2, 2, date(2023, 2, 21), date(2023, 3, 23)),  # 2023 repeats the 2nd (龙抬头)
    ],
)
def test_a_lunar_festival_falls_in_the_regular_month_never_its_leap_repeat(
    year, month, day, regular, leap_repeat
):
    assert LunarDate.leap_month_for_year(year) == month
    assert LunarDate(year, month, day, True).to_solar_date() == leap_repeat
    rule = FestivalRule(
        code="x", name_zh="节", name_en="Day", calendar="lunar", month=month, day=day
    )
    hits = [d for d in days_of(year) if festivals_on(d, [rule])]
    assert hits == [regular]


def test_lunar_day_30_falls_on_the_last_day_of_a_short_month():
    eve = FestivalRule(code="new_year_eve", name_zh="除夕", name_en="New Year's Eve",
                       calendar="lunar", month=12, day=30)  # fmt: skip
    assert [d for d in days_of(2026) if festivals_on(d, [eve])] == [date(2026, 2, 16)]
    assert [d for d in days_of(2027) if festivals_on(d, [eve])] == [date(2027, 2, 5)]


# --------------------------------------------------------------------------- seasons

SEASON_DAYS_2026 = [
    (date(2026, 2, 4), "lichun", "立春", "Start of Spring", "spring"),
    (date(2026, 5, 5), "lixia", "立夏", "Start of Summer", "summer"),
    (date(2026, 8, 7), "liqiu", "立秋", "Start of Autumn", "autumn"),
    (date(2026, 11, 7), "lidong", "立冬", "Start of Winter", "winter"),
]


@pytest.mark.parametrize(("day", "code", "zh", "en", "season"), SEASON_DAYS_2026)
def test_season_starts_in_2026(day, code, zh, en, season):
    found = season_start_on(day)
    assert found is not None
    assert (found.code, found.name("zh_CN"), found.name("en"), found.season) == (
        code, zh, en, season,
    )  # fmt: skip
    assert found.on == day and found.at.date() == day
    assert season_start_on(day - ONE_DAY) is None
    assert season_start_on(day + ONE_DAY) is None


def test_only_the_four_season_starts_by_default():
    hits = [d for d in days_of(2026) if season_start_on(d)]
    assert hits == [d for d, *_ in SEASON_DAYS_2026]


def test_the_terms_are_configurable():
    assert season_start_on(date(2026, 12, 22), terms=("dongzhi",)).name("zh_CN") == "冬至"
    assert season_start_on(date(2026, 11, 7), terms=("dongzhi",)) is None
    with pytest.raises(ValueError, match="unknown solar term"):
        season_start_on(date(2026, 11, 7), terms=("winter",))


def test_term_dates_are_taken_in_the_brand_timezone():
    # 立夏 2027 is at 01:24 on 6 May Beijing time: still 5 May in California.
    assert season_start_on(date(2027, 5, 6)).code == "lixia"
    assert season_start_on(date(2027, 5, 5), tz="America/Los_Angeles").code == "lixia"
    assert season_start_on(date(2027, 5, 6), tz="America/Los_Angeles") is None
    # 立冬 2027 is at 23:38 on 7 Nov Beijing time: already 8 Nov in Tokyo.
    assert season_start_on(date(2027, 11, 7)).code == "lidong"
    assert season_start_on(date(2027, 11, 8), tz="Asia/Tokyo").code == "lidong"


def test_a_year_has_twenty_four_terms_in_order():
    terms = solar_terms(2026)
    assert len(terms) == 24 and len({t.code for t in terms}) == 24
    assert [t.at for t in terms] == sorted(t.at for t in terms)
    assert all(t.on.year == 2026 for t in terms)
    assert (terms[0].name_zh, terms[0].on) == ("小寒", date(2026, 1, 5))
    assert (terms[-1].name_zh, terms[-1].on) == ("冬至", date(2026, 12, 22))


# --------------------------------------------------------------------------- configuration


def test_default_settings_hold_the_domain_defaults():
    occasions = load_settings(environ={}).occasions
    assert occasions.festival_rules() == DEFAULT_FESTIVALS
    assert occasions.season_terms == ("lichun", "lixia", "liqiu", "lidong")


def test_store_anniversary_is_added_by_one_key():
    occasions = load_settings(environ={}, overrides={"occasions": {"store_anniversary": "05-18"}})
    rules = occasions.occasions.festival_rules()
    assert codes(date(2026, 5, 18), rules) == ["store_anniversary"]
    assert festivals_on(date(2026, 5, 18), rules)[0].name("zh_CN") == "店庆"
    assert codes(date(2026, 5, 17), rules) == []


def test_festival_list_override_adds_and_removes(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        "[occasions]\n"
        "festivals = [\n"
        '  { code = "spring_festival", name_zh = "春节", name_en = "Spring Festival",'
        ' calendar = "lunar", month = 1, day = 1 },\n'
        '  { code = "valentine", name_zh = "情人节", name_en = "Valentine\'s Day",'
        " month = 2, day = 14 },\n"
        "]\n"
        'season_terms = ["dongzhi"]\n',
        encoding="utf-8",
    )
    occasions = load_settings(path, environ={}).occasions
    rules = occasions.festival_rules()
    assert codes(date(2026, 2, 14), rules) == ["valentine"]
    assert codes(date(2026, 2, 17), rules) == ["spring_festival"]
    assert codes(date(2026, 9, 25), rules) == []  # 中秋 removed
    assert occasions.season_terms == ("dongzhi",)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"store_anniversary": "5-18"}, "occasions.store_anniversary"),
        ({"store_anniversary": "02-30"}, "occasions.store_anniversary"),
        ({"season_terms": ["lichun", "midsummer"]}, "occasions.season_terms"),
        (
            {
                "festivals": [
                    {
                        "code": "x",
                        "name_zh": "节",
                        "name_en": "Day",
                        "calendar": "lunar",
                        "month": 1,
                        "day": 31,
                    }
                ]
            },
            "occasions.festivals",
        ),  # fmt: skip
        (
            {
                "festivals": [
                    {"code": "Bad Code", "name_zh": "节", "name_en": "Day", "month": 1, "day": 1}
                ]
            },
            "occasions.festivals",
        ),  # fmt: skip
        (
            {
                "festivals": [
                    {"code": "x", "name_zh": "节", "name_en": "Day", "month": 2, "day": 30}
                ]
            },
            "occasions.festivals",
        ),  # fmt: skip
        (
            {"festivals": [dict(r.model_dump()) for r in DEFAULT_FESTIVALS[:2]] * 2},
            "occasions.festivals",
        ),  # fmt: skip
        ({"holidays": []}, "occasions.holidays"),
    ],
)
def test_bad_occasion_settings_stop_start_up_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(environ={}, overrides={"occasions": overrides})


def test_solar_feb_29_festival_is_kept_on_feb_28_in_common_years():
    rule = FestivalRule(code="leap", name_zh="闰日", name_en="Leap day", month=2, day=29)
    assert codes(date(2028, 2, 29), [rule]) == ["leap"]
    assert codes(date(2027, 2, 28), [rule]) == ["leap"]
    assert OccasionSettings(festivals=(rule,)).festival_rules() == (rule,)
