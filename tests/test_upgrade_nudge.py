"""Upgrade nudges say only what can still be done (docs/loyalty-rules.md "Upgrade nudges").

Scheme C: SVIP is reached on 30,000 points in a day, 60,000 in a month or 60,000 in the
annual period (1 Aug - 31 Jul). Purchases go through `record_purchase`; the answer is the
chat bot's "积分" (`bot.handlers.points.answer`), every date explicit.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from bot.handlers import points
from models.rules import TierRule
from models.tiers.facts import read_points
from models.tiers.nudge import NUDGE_MIN_DAYS, can_still_meet, upgrade_nudge
from models.tiers.progress import RuleProgress, TierProgress
from tests.test_tiers import C, buy, member_of, progress_of, session  # noqa: F401  (fixture)


async def _answer(session, today: date, locale: str = "zh_CN") -> str:  # noqa: F811
    member = await member_of(session)
    found = await read_points(session, tiers=C.tiers, member_id=member.id, today=today)
    reply = points.answer(
        rules=C, brand="B", locale=locale, today=today, member=found.member,
        progress=found.progress, expiring=None,
    )  # fmt: skip
    return reply.text


async def _we_buying(session, on: date, amount: int) -> None:  # noqa: F811
    await buy(session, C, 6000, date(2026, 9, 10))  # WE card
    await buy(session, C, amount, on)
    assert (await member_of(session)).tier == "we"


async def test_no_nudge_names_today_as_the_deadline(session):  # noqa: F811
    today = date(2026, 12, 2)
    await _we_buying(session, today, 25000)
    # The day rule is the closest (5,000 of 30,000 missing) but its deadline is today.
    progress = await progress_of(session, C, await member_of(session), today)
    assert (progress.closest.rule.window, progress.closest.buy_by) == ("day", today)
    text = await _answer(session, today)
    assert "2026年12月2日前" not in text and "5,000" not in text, text
    # The period (31,000 of 60,000, ends 31 Jul) is the closest rule left.
    assert "再积 29,000 分可升级SVIP卡（2027年7月31日前）" in text, text
    english = await _answer(session, today, "en")
    assert "29,000 more points to reach SVIP" in english, english


async def test_no_nudge_when_every_deadline_is_too_near_but_the_tier_shows(session):  # noqa: F811
    today = date(2027, 7, 28)  # month and period both end on 31 Jul: 3 days
    await _we_buying(session, today, 2000)
    text = await _answer(session, today)
    assert "升级" not in text, text
    assert "会员等级：WE卡" in text, text
    english = await _answer(session, today, "en")
    assert "to reach" not in english, english


def test_the_house_rule_on_its_own():
    rule = TierRule(measure="points", window="month", threshold=60000)
    today = date(2026, 12, 2)

    def p(buy_by, missing=Decimal(100)):
        return RuleProgress(rule=rule, counted=Decimal(0), missing=missing, buy_by=buy_by)

    assert not can_still_meet(p(today), today)
    assert not can_still_meet(p(date(2026, 12, 1)), today)
    assert not can_still_meet(p(date(2026, 12, 2 + NUDGE_MIN_DAYS - 1)), today)
    assert can_still_meet(p(date(2026, 12, 2 + NUDGE_MIN_DAYS)), today)
    assert can_still_meet(p(None), today)  # no deadline (single purchase, cumulative)
    progress = TierProgress(
        tier="we", pending=None, next=C.tiers.find("svip"), rules=(p(today),), today=today
    )
    assert progress.closest.buy_by == today and upgrade_nudge(progress) is None
