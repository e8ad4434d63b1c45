"""The locales a member can read and how values are written in each.

`pick_locale` chooses among the supported locales (``zh_CN``, the default, and ``en``);
the formatters write a value the way a text in that locale shows it — the reply and
message templates reach them as filters (`scheduler.text`), code that builds a text
itself calls them directly:

- `format_money`: Decimal yuan → "300元" / "¥300" (cents only when there are some);
- `format_day`: a date → "2026年12月31日" / "31 Dec 2026"; `format_short_day` leaves
  out the year and adds the weekday ("12月5日 周六" / "Sat 5 Dec");
- `format_points`: an integer with thousands separators ("3,000"), in every locale;
- `local_name`: a tier level's or a reward's name (``name``, or ``name_en`` in English,
  falling back to ``name`` when there is no English one).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Protocol

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"

_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EN_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ZH_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


def pick_locale(*candidates: str | None) -> str:
    """The first candidate that is a supported locale, else the default."""
    for c in candidates:
        if c in LOCALES:
            return c
    return DEFAULT_LOCALE


def format_money(value: Decimal | int, locale: str) -> str:
    amount = Decimal(value)
    text = f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"
    return f"¥{text}" if locale == "en" else f"{text.replace(',', '')}元"


def format_day(d: date, locale: str) -> str:
    if locale == "en":
        return f"{d.day} {_EN_MONTHS[d.month - 1]} {d.year}"
    return f"{d.year}年{d.month}月{d.day}日"


def format_short_day(d: date, locale: str) -> str:
    if locale == "en":
        return f"{_EN_WEEKDAYS[d.weekday()]} {d.day} {_EN_MONTHS[d.month - 1]}"
    return f"{d.month}月{d.day}日 {_ZH_WEEKDAYS[d.weekday()]}"


def format_points(value: int) -> str:
    return f"{int(value):,}"


class Named(Protocol):
    """Something the rules name in two languages: a tier level or a reward
    (`models.rules.TierLevel`, `models.rules.Reward`)."""

    name: str
    name_en: str


def local_name(thing: Named, locale: str) -> str:
    """`thing`'s name in `locale`: the (Chinese) ``name``, or in English ``name_en`` when
    the rules give one, else ``name``."""
    return (thing.name_en or thing.name) if locale == "en" else thing.name
