"""The points a purchase earns: item multipliers, the birthday and double-points day
multipliers (`purchase_points`; the rules are described in `models.purchases`)."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

from models.calendar import is_birthday
from models.purchases.input import ItemIn
from models.rules import PointsRules
from models.tables.members import Member
from models.tables.purchases import PurchaseItem


@lru_cache(maxsize=256)
def _exact(value: Decimal) -> Fraction:
    """A configured rate as an exact fraction (the same few values, purchase after purchase)."""
    return Fraction(value)


def item_multiplier(rules: PointsRules, item: ItemIn | PurchaseItem) -> Decimal:
    """The multiplier one item earns under: its brand's, else its category's, else 1, capped."""
    if item.brand and item.brand in rules.multipliers:
        m = rules.multipliers[item.brand]
    elif item.category in rules.multipliers:
        m = rules.multipliers[item.category]
    else:
        m = Decimal(1)
    return min(m, rules.max_multiplier)


def items_multiplier(rules: PointsRules, items: list[ItemIn]) -> Fraction:
    """Brand/category multipliers averaged weighted by item amounts (1 without items).

    An exact fraction, so that 1.5 × 2 is 3 and never 2.999….
    """
    if not items or (not rules.multipliers and rules.max_multiplier >= 1):
        return Fraction(1)  # every item earns under 1: the average is exactly 1
    total = sum((i.amount for i in items), Decimal(0))
    if total == 0:
        return Fraction(1)
    weighted = sum((i.amount * item_multiplier(rules, i) for i in items), Decimal(0))
    return Fraction(weighted) / Fraction(total)


def is_double_points_day(rules: PointsRules, day: date) -> bool:
    days = rules.double_points_days
    if not days:
        return False
    return day.isoformat() in days or f"{day.month:02d}-{day.day:02d}" in days


def member_birthday_on(member: Member, day: date) -> bool:
    if not (member.birthday_month and member.birthday_day):
        return False
    return is_birthday(
        day,
        month=member.birthday_month,
        day=member.birthday_day,
        calendar=member.birthday_calendar or "solar",
        leap_month=member.birthday_leap_month,
    )


def purchase_points(
    rules: PointsRules, *, member: Member, amount: Decimal, items: list[ItemIn], day: date
) -> tuple[int, int, str]:
    """(base points, bonus points, bonus kind) for one purchase — see the module docstring.

    Bonus kind: "birthday" (bonus posted as ``birthday_bonus``), "double_points_day"
    (bonus folded into the purchase entry) or "" (no day multiplier).
    """
    earned = Fraction(amount) * _exact(rules.rate) * items_multiplier(rules, items)
    base = math.floor(earned)
    birthday = (
        rules.birthday_multiplier.get(member.tier, Decimal(1))
        if member_birthday_on(member, day)
        else Decimal(1)
    )
    double = rules.double_points_multiplier if is_double_points_day(rules, day) else Decimal(1)
    multiplier = max(birthday, double)
    if multiplier <= 1:
        return base, 0, ""
    bonus = math.floor(earned * Fraction(multiplier)) - base
    return base, bonus, "birthday" if birthday >= double else "double_points_day"
