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
"""

from __future__ import annotations

from decimal import Decimal

from bot.conversation import Reply
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match
from models import calendar, tiers


def _next_reward(turn: Turn) -> dict | None:
    balance = turn.member.points
    by_cost = sorted(turn.rules.rewards.catalogue, key=lambda r: r.cost)
    affordable = [r for r in by_cost if r.cost <= balance]
    if affordable:
        best = affordable[-1]
        return {"affordable": True, "name": turn.reward_name(best), "missing": 0}
    if not by_cost:
        return None
    cheapest = by_cost[0]
    return {
        "affordable": False,
        "name": turn.reward_name(cheapest),
        "missing": cheapest.cost - balance,
    }


def _next_tier(turn: Turn, progress: tiers.TierProgress | None) -> dict | None:
    if progress is None:
        return None
    rule = progress.closest
    missing = rule.missing
    return {
        "name": turn.tier_name(progress.next.code),
        "pending": turn.tier_name(progress.pending) if progress.pending else None,
        "measure": rule.rule.measure,
        "window": rule.rule.window,
        "single": rule.rule.window == "single_purchase",
        "threshold": rule.rule.threshold,
        "missing": int(missing) if rule.rule.measure == "points" else missing,
        "buy_by": rule.buy_by,
    }


def _birthday_multiplier(turn: Turn) -> Decimal | None:
    member = turn.member
    if not (member.birthday_month and member.birthday_day):
        return None
    if not calendar.is_birthday(
        turn.today,
        month=member.birthday_month,
        day=member.birthday_day,
        calendar=member.birthday_calendar,
        leap_month=member.birthday_leap_month,
    ):
        return None
    factor = turn.rules.points.birthday_multiplier.get(member.tier, Decimal(1))
    return factor if factor > 1 else None


def _factor_text(factor: Decimal) -> str:
    return f"{factor.normalize():f}"  # 2 → "2", 1.50 → "1.5", 20 → "20" (not "2E+1")


async def show(turn: Turn, match: Match) -> Reply:
    member = turn.member
    progress, expiring = await tiers.tier_progress_and_expiry(
        turn.session, rules=turn.rules, member=member, today=turn.today
    )
    factor = _birthday_multiplier(turn)
    return turn.reply(
        "points",
        name=member.name,
        points=member.points,
        tier=turn.tier_name(member.tier),
        spend=member.cumulative_spend,
        reward=_next_reward(turn),
        next_tier=_next_tier(turn, progress),
        expiring=({"points": expiring[0], "day": expiring[1]} if expiring is not None else None),
        birthday_factor=_factor_text(factor) if factor is not None else None,
    )


ROUTES = [Route(Intent.POINTS, show)]
