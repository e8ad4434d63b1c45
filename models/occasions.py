"""Festivals and season starts: pure functions of a date, no clock (DOMAIN.md §7.3, §7.5).

Festivals (`festivals_on`): a configurable list of yearly days, each on the
Gregorian (``solar``) or the Chinese lunar (``lunar``) calendar. The default list
is DOMAIN.md §7.5: 元旦 (01-01), 春节 (lunar 1-1), 元宵 (lunar 1-15), 端午 (lunar
5-5), 七夕 (lunar 7-7), 中秋 (lunar 8-15), 重阳 (lunar 9-9), 国庆 (10-01), plus the
store's anniversary when ``[occasions] store_anniversary`` is set. Lunar days
follow `models.calendar`: a festival falls in the regular lunar month, never in
a leap repeat of it (2025 repeats the 6th month, 2023 the 2nd), and day 30 of a
29-day month falls on its 29th (so lunar 12-30 works as New Year's Eve); a
solar 02-29 falls on 02-28 in common years.

Season starts (`season_start_on`): the solar terms that open a season, by
default the four 立春 / 立夏 / 立秋 / 立冬 (DOMAIN.md §7.3), computed for each year
with `sxtwl`. sxtwl gives each term's moment as a Julian day in Beijing time
(UTC+8); the moment is converted to the brand's timezone before taking its
date, so a brand outside China greets on its own calendar day. Results are
cached per (year, timezone).

Callers pass the brand's day (`models.clock`): nothing here reads the clock.
"""

from __future__ import annotations

import calendar as _gregorian
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import sxtwl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.calendar import is_birthday

DEFAULT_TIMEZONE = "Asia/Shanghai"
STORE_ANNIVERSARY = "store_anniversary"
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_MMDD = re.compile(r"^(\d{2})-(\d{2})$")

# --------------------------------------------------------------------------- festivals


class FestivalRule(BaseModel):
    """One yearly festival: ``code`` (template key), names, calendar, month and day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name_zh: Annotated[str, Field(min_length=1)]
    name_en: Annotated[str, Field(min_length=1)]
    calendar: Literal["solar", "lunar"] = "solar"
    month: Annotated[int, Field(ge=1, le=12)]
    day: Annotated[int, Field(ge=1, le=31)]

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not _CODE.match(v):
            raise ValueError("expected lower-case letters, digits and _ (e.g. mid_autumn)")
        return v

    @model_validator(mode="after")
    def _day_exists(self) -> FestivalRule:
        longest = 30 if self.calendar == "lunar" else _gregorian.monthrange(2024, self.month)[1]
        if self.day > longest:
            raise ValueError(f"{self.calendar} month {self.month} has no day {self.day}")
        return self


@dataclass(frozen=True)
class Festival:
    """A festival falling on a given Gregorian date."""

    code: str
    name_zh: str
    name_en: str
    calendar: str
    on: date

    def name(self, locale: str) -> str:
        return self.name_en if locale == "en" else self.name_zh


def _rule(code: str, zh: str, en: str, cal: str, month: int, day: int) -> FestivalRule:
    return FestivalRule(code=code, name_zh=zh, name_en=en, calendar=cal, month=month, day=day)


DEFAULT_FESTIVALS: tuple[FestivalRule, ...] = (
    _rule("new_year", "元旦", "New Year's Day", "solar", 1, 1),
    _rule("spring_festival", "春节", "Spring Festival", "lunar", 1, 1),
    _rule("lantern", "元宵节", "Lantern Festival", "lunar", 1, 15),
    _rule("dragon_boat", "端午节", "Dragon Boat Festival", "lunar", 5, 5),
    _rule("qixi", "七夕", "Qixi Festival", "lunar", 7, 7),
    _rule("mid_autumn", "中秋节", "Mid-Autumn Festival", "lunar", 8, 15),
    _rule("double_ninth", "重阳节", "Double Ninth Festival", "lunar", 9, 9),
    _rule("national_day", "国庆节", "National Day", "solar", 10, 1),
)


def festivals_on(d: date, festivals: Sequence[FestivalRule] = DEFAULT_FESTIVALS) -> list[Festival]:
    """The festivals of `festivals` that fall on the brand day `d`, in list order."""
    return [
        Festival(r.code, r.name_zh, r.name_en, r.calendar, d)
        for r in festivals
        if is_birthday(d, month=r.month, day=r.day, calendar=r.calendar)
    ]


# --------------------------------------------------------------------------- solar terms


@dataclass(frozen=True)
class _Term:
    code: str
    name_zh: str
    name_en: str
    season: str


# Indexed as sxtwl's jqIndex: 0 is 冬至 (winter solstice), 3 is 立春.
SOLAR_TERMS: tuple[_Term, ...] = (
    _Term("dongzhi", "冬至", "Winter Solstice", "winter"),
    _Term("xiaohan", "小寒", "Minor Cold", "winter"),
    _Term("dahan", "大寒", "Major Cold", "winter"),
    _Term("lichun", "立春", "Start of Spring", "spring"),
    _Term("yushui", "雨水", "Rain Water", "spring"),
    _Term("jingzhe", "惊蛰", "Awakening of Insects", "spring"),
    _Term("chunfen", "春分", "Spring Equinox", "spring"),
    _Term("qingming", "清明", "Pure Brightness", "spring"),
    _Term("guyu", "谷雨", "Grain Rain", "spring"),
    _Term("lixia", "立夏", "Start of Summer", "summer"),
    _Term("xiaoman", "小满", "Grain Buds", "summer"),
    _Term("mangzhong", "芒种", "Grain in Ear", "summer"),
    _Term("xiazhi", "夏至", "Summer Solstice", "summer"),
    _Term("xiaoshu", "小暑", "Minor Heat", "summer"),
    _Term("dashu", "大暑", "Major Heat", "summer"),
    _Term("liqiu", "立秋", "Start of Autumn", "autumn"),
    _Term("chushu", "处暑", "End of Heat", "autumn"),
    _Term("bailu", "白露", "White Dew", "autumn"),
    _Term("qiufen", "秋分", "Autumn Equinox", "autumn"),
    _Term("hanlu", "寒露", "Cold Dew", "autumn"),
    _Term("shuangjiang", "霜降", "Frost's Descent", "autumn"),
    _Term("lidong", "立冬", "Start of Winter", "winter"),
    _Term("xiaoxue", "小雪", "Minor Snow", "winter"),
    _Term("daxue", "大雪", "Major Snow", "winter"),
)
TERM_CODES = tuple(t.code for t in SOLAR_TERMS)
DEFAULT_SEASON_TERMS = ("lichun", "lixia", "liqiu", "lidong")

_BEIJING = timezone(timedelta(hours=8))
_J2000 = datetime(2000, 1, 1, 12, tzinfo=_BEIJING)  # Julian day 2451545.0, Beijing time


@dataclass(frozen=True)
class Season:
    """A solar term: its code and names, the season it belongs to, its local day and moment."""

    code: str
    name_zh: str
    name_en: str
    season: str
    on: date
    at: datetime

    def name(self, locale: str) -> str:
        return self.name_en if locale == "en" else self.name_zh


def _moment(jd: float) -> datetime:
    """sxtwl's Julian day (Beijing time) as an aware datetime, to the second."""
    return _J2000 + timedelta(seconds=round((jd - 2451545.0) * 86400))


@lru_cache(maxsize=256)
def solar_terms(year: int, tz: str = DEFAULT_TIMEZONE) -> tuple[Season, ...]:
    """All solar terms whose day, in timezone `tz`, falls in Gregorian `year`, in order."""
    zone = ZoneInfo(tz)
    found: dict[tuple[int, date], Season] = {}
    # sxtwl's list for year y runs from 立春 of y to 立春 of y + 1, so January's
    # terms of `year` come from the list of `year - 1`.
    for source in (year - 1, year):
        for jq in sxtwl.getJieQiByYear(source):
            term = SOLAR_TERMS[jq.jqIndex]
            at = _moment(jq.jd).astimezone(zone)
            if at.year == year:
                found[(jq.jqIndex, at.date())] = Season(
                    term.code, term.name_zh, term.name_en, term.season, at.date(), at
                )
    return tuple(sorted(found.values(), key=lambda s: s.at))


def season_start_on(
    d: date,
    *,
    terms: Sequence[str] = DEFAULT_SEASON_TERMS,
    tz: ZoneInfo | str = DEFAULT_TIMEZONE,
) -> Season | None:
    """The configured season-start term on brand day `d`, if any (terms are ≥ 14 days apart)."""
    unknown = [t for t in terms if t not in TERM_CODES]
    if unknown:
        raise ValueError(f"unknown solar term code(s) {unknown}; expected some of {TERM_CODES}")
    key = tz.key if isinstance(tz, ZoneInfo) else tz
    for season in solar_terms(d.year, key):
        if season.on == d and season.code in terms:
            return season
    return None


# --------------------------------------------------------------------------- settings


class OccasionSettings(BaseModel):
    """``[occasions]``: the festival list, the store's anniversary and the season-start terms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    festivals: tuple[FestivalRule, ...] = DEFAULT_FESTIVALS
    """Festivals greeted with a `holiday` message (DOMAIN.md §7.5)."""
    store_anniversary: str = ""
    """MM-DD (solar) of the store's anniversary, greeted as `store_anniversary`; "" = none."""
    season_terms: tuple[str, ...] = DEFAULT_SEASON_TERMS
    """Solar-term codes that trigger a `seasonal` message (DOMAIN.md §7.3)."""

    @field_validator("festivals")
    @classmethod
    def _unique(cls, v: tuple[FestivalRule, ...]) -> tuple[FestivalRule, ...]:
        codes = [r.code for r in v]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"festival codes must be unique: {dupes}")
        return v

    @field_validator("store_anniversary")
    @classmethod
    def _mmdd(cls, v: str) -> str:
        if not v:
            return v
        m = _MMDD.match(v)
        month, day = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        if not 1 <= month <= 12 or not 1 <= day <= _gregorian.monthrange(2024, month)[1]:
            raise ValueError("expected MM-DD (or empty for none)")
        return v

    @field_validator("season_terms")
    @classmethod
    def _terms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in v if t not in TERM_CODES]
        if unknown:
            raise ValueError(f"unknown solar term code(s) {unknown}; expected some of {TERM_CODES}")
        return v

    def festival_rules(self) -> tuple[FestivalRule, ...]:
        """The festival list, plus the store's anniversary when set (and not listed already)."""
        if not self.store_anniversary or any(r.code == STORE_ANNIVERSARY for r in self.festivals):
            return self.festivals
        month, day = (int(p) for p in self.store_anniversary.split("-"))
        anniversary = _rule(STORE_ANNIVERSARY, "店庆", "Store anniversary", "solar", month, day)
        return (*self.festivals, anniversary)
