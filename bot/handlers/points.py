"""Points balance: 积分 / 查积分 / JF / POINTS / BALANCE (CONTRACT.md "Member keywords").

The answer carries what the points notice of DOMAIN.md §2 carries, for today:

- the balance, the tier (its local name) and the cumulative spend;
- the next reward: the cheapest catalogue item the balance does not cover yet
  and how many points are missing ("距下一个礼品还差XX分", 003) — or, when some
  reward is already affordable, that the member can redeem now;
- the next tier (`models.tiers.progress.progress_from_sales`): the closest reach rule,
  what is missing (points or yuan) and by when, for windowed schemes; a tier waiting
  for its card is named as such;
- the balance without the lots already past their last day (the daily job may not
  have expired them yet), the next points to expire and their last day
  (`models.points_reads.lapsed_points`, `models.points_reads.next_expiry`);
- on the member's birthday (`models.calendar.is_birthday`, solar or lunar), the
  birthday multiplier of their tier when it is above 1 (DOMAIN.md §2, 000/004).

All of it is one read, `models.tiers.facts.member_facts` (plus a sum per cumulative
rule): `show` runs it through the turn's session (`read_points`), `bot.quick` on the
raw driver for a bound WeChat member; `answer` builds the reply from the facts either
gives (`answer_facts`), so both paths give exactly the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from bot.conversation import Reply
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match
from models import calendar
from models.locale_format import local_name
from models.rules import LoyaltyRules
from models.tiers.facts import PointsFacts, read_points
from models.tiers.nudge import upgrade_nudge
from models.tiers.progress import TierProgress
from scheduler.text import render


@dataclass(slots=True)
class _Reward:
    """`reward` of the template (attributes: jinja2 reads them without a failed lookup)."""

    affordable: bool
    name: str
    missing: int


@dataclass(slots=True)
class _NextTier:
    """`next_tier` of the template."""

    name: str
    pending: str | None
    measure: str
    window: str
    single: bool
    threshold: Decimal
    missing: Decimal | int
    buy_by: date | None
    nudge: bool = True
    """False: only the pending card is shown (`models.tiers.nudge.upgrade_nudge`: no rule)."""


@dataclass(slots=True)
class _Expiring:
    """`expiring` of the template."""

    points: int
    day: date


def _next_reward(rules: LoyaltyRules, locale: str, balance: int) -> _Reward | None:
    # The most expensive reward the balance covers (the last of equals, as a stable sort
    # by cost would give), else the cheapest one (the first of equals).
    best = cheapest = None
    for reward in rules.rewards.catalogue:
        cost = reward.cost
        if cost <= balance:
            if best is None or cost >= best.cost:
                best = reward
        elif cheapest is None or cost < cheapest.cost:
            cheapest = reward
    if best is not None:
        return _Reward(True, local_name(best, locale), 0)
    if cheapest is None:
        return None
    return _Reward(False, local_name(cheapest, locale), cheapest.cost - balance)


def _next_tier(
    rules: LoyaltyRules, locale: str, progress: TierProgress | None
) -> _NextTier | None:
    if progress is None:
        return None
    # Only a rule the member can still meet in time (docs/loyalty-rules.md "Upgrade
    # nudges"); none → no upgrade line, the card waiting for pickup still shown.
    closest = upgrade_nudge(progress)
    if closest is None:
        if progress.pending is None:
            return None
        closest = progress.closest
        nudge = False
    else:
        nudge = True
    rule = closest.rule
    missing = closest.missing
    tiers = rules.tiers
    return _NextTier(
        name=local_name(tiers.level(progress.next.code), locale),
        pending=local_name(tiers.level(progress.pending), locale) if progress.pending else None,
        measure=rule.measure,
        window=rule.window,
        single=rule.window == "single_purchase",
        threshold=rule.threshold,
        missing=int(missing) if rule.measure == "points" else missing,
        buy_by=closest.buy_by,
        nudge=nudge,
    )


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
    progress: TierProgress | None,
    expiring: tuple[int, date] | None,
) -> Reply:
    """The points answer from what was read (`models.tiers.facts.answer_facts`)."""
    factor = _birthday_multiplier(rules, member, today)
    text = render(
        "points",
        locale,
        brand=brand,
        name=member.name,
        points=member.points,
        tier=local_name(rules.tiers.level(member.tier), locale),
        spend=member.cumulative_spend,
        reward=_next_reward(rules, locale, member.points),
        next_tier=_next_tier(rules, locale, progress),
        expiring=_Expiring(*expiring) if expiring is not None else None,
        birthday_factor=_factor_text(factor) if factor is not None else None,
    )
    return Reply(text)


async def show(turn: Turn, match: Match) -> Reply:
    found = await read_points(
        turn.session, tiers=turn.rules.tiers, member_id=turn.member.id, today=turn.today
    )
    return answer(
        rules=turn.rules,
        brand=turn.settings.brand.name,
        locale=turn.locale,
        today=turn.today,
        member=found.member,
        progress=found.progress,
        expiring=found.expiring,
    )


ROUTES = [Route(Intent.POINTS, show)]
