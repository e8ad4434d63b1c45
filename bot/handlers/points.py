"""Points balance: 积分 / 查积分 / JF / POINTS / BALANCE (CONTRACT.md "Member keywords").

The answer carries what the points notice of DOMAIN.md §2 carries, for today:

- the balance, the tier (its local name) and the cumulative spend;
- the next reward: the cheapest catalogue item the balance does not cover yet
  and how many points are missing ("距下一个礼品还差XX分", 003) — or, when some
  reward is already affordable, that the member can redeem now;
- the next tier (`models.tiers.tier_progress`): the closest reach rule, what is
  missing (points or yuan) and by when, for windowed schemes; a tier waiting for
  its card is named as such;
- the next points to expire and their last day (`models.points.expiring_soon`);
  both read by `models.tiers.tier_progress_and_expiry`, in one statement when it can;
- on the member's birthday (`models.calendar.is_birthday`, solar or lunar), the
  birthday multiplier of their tier when it is above 1 (DOMAIN.md §2, 000/004).

`show` reads through the turn's session; `answer` builds the reply from what was
read, so `bot.quick` (the same answer without a session, for a bound WeChat member)
gives exactly the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from bot.conversation import Reply
from bot.handlers.turn import Route, Turn, reward_name, tier_name
from bot.router import Intent, Match
from bot.templating import render
from models import calendar, tiers
from models.rules import LoyaltyRules


@dataclass(frozen=True, slots=True)
class PointsFacts:
    """The member's side of the answer (a `Member` row has these attributes too)."""

    name: str
    points: int
    tier: str
    cumulative_spend: Decimal
    birthday_month: int | None
    birthday_day: int | None
    birthday_calendar: str
    birthday_leap_month: bool


def _next_reward(rules: LoyaltyRules, locale: str, balance: int) -> dict | None:
    by_cost = sorted(rules.rewards.catalogue, key=lambda r: r.cost)
    affordable = [r for r in by_cost if r.cost <= balance]
    if affordable:
        best = affordable[-1]
        return {"affordable": True, "name": reward_name(locale, best), "missing": 0}
    if not by_cost:
        return None
    cheapest = by_cost[0]
    return {
        "affordable": False,
        "name": reward_name(locale, cheapest),
        "missing": cheapest.cost - balance,
    }


def _next_tier(
    rules: LoyaltyRules, locale: str, progress: tiers.TierProgress | None
) -> dict | None:
    if progress is None:
        return None
    rule = progress.closest
    missing = rule.missing
    return {
        "name": tier_name(rules, locale, progress.next.code),
        "pending": tier_name(rules, locale, progress.pending) if progress.pending else None,
        "measure": rule.rule.measure,
        "window": rule.rule.window,
        "single": rule.rule.window == "single_purchase",
        "threshold": rule.rule.threshold,
        "missing": int(missing) if rule.rule.measure == "points" else missing,
        "buy_by": rule.buy_by,
    }


def _birthday_multiplier(rules: LoyaltyRules, member: PointsFacts, today: date) -> Decimal | None:
    if not (member.birthday_month and member.birthday_day):
        return None
    if not calendar.is_birthday(
        today,
        month=member.birthday_month,
        day=member.birthday_day,
        calendar=member.birthday_calendar,
        leap_month=member.birthday_leap_month,
    ):
        return None
    factor = rules.points.birthday_multiplier.get(member.tier, Decimal(1))
    return factor if factor > 1 else None


def _factor_text(factor: Decimal) -> str:
    return f"{factor.normalize():f}"  # 2 → "2", 1.50 → "1.5", 20 → "20" (not "2E+1")


def answer(
    *,
    rules: LoyaltyRules,
    brand: str,
    locale: str,
    today: date,
    member: PointsFacts,
    progress: tiers.TierProgress | None,
    expiring: tuple[int, date] | None,
) -> Reply:
    """The points answer from what was read (`member` may be a `Member` row)."""
    factor = _birthday_multiplier(rules, member, today)
    text = render(
        "points",
        locale,
        brand=brand,
        name=member.name,
        points=member.points,
        tier=tier_name(rules, locale, member.tier),
        spend=member.cumulative_spend,
        reward=_next_reward(rules, locale, member.points),
        next_tier=_next_tier(rules, locale, progress),
        expiring=({"points": expiring[0], "day": expiring[1]} if expiring is not None else None),
        birthday_factor=_factor_text(factor) if factor is not None else None,
    )
    return Reply(text)


async def show(turn: Turn, match: Match) -> Reply:
    member = turn.member
    progress, expiring = await tiers.tier_progress_and_expiry(
        turn.session, rules=turn.rules, member=member, today=turn.today
    )
    return answer(
        rules=turn.rules,
        brand=turn.settings.brand.name,
        locale=turn.locale,
        today=turn.today,
        member=member,
        progress=progress,
        expiring=expiring,
    )


ROUTES = [Route(Intent.POINTS, show)]
