"""The daily review of tiers whose validity ended: renewed or lowered one level
(`review_tiers`; the rules are described in `models.tiers`); and, on the first day of
the annual period, the upgrades earned during the period for levels that take effect
at the review (`review_upgrades`, 004's August review)."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards
from models.clock import add_months
from models.rules import LoyaltyRules, TierRules
from models.tables.ledger import TierChange
from models.tables.members import Member
from models.tiers.meter import Meter
from models.tiers.upgrade import set_tier
from models.tiers.windows import validity_window


async def review_tiers(
    session: AsyncSession, *, rules: LoyaltyRules, today: date, now: datetime | None = None
) -> list[TierChange]:
    """Renew or lower every tier whose validity ended on or before `today` (a daily job).

    Each ended validity is judged on its own (a missed run catches up one validity
    at a time), so afterwards every reviewed member's ``tier_expires`` is after
    `today` or empty, and a second run on the same day changes nothing. Rows are
    locked (`FOR UPDATE` on PostgreSQL) so two concurrent runs cannot both apply.
    `now` stamps the TierChange rows (default: the time of writing).
    """
    tiers = rules.tiers
    stmt = (
        select(Member)
        .where(col(Member.tier_expires).is_not(None), col(Member.tier_expires) <= today)
        .order_by(col(Member.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    changes: list[TierChange] = []
    for member in list(await session.exec(stmt)):
        meter = Meter(session, member.id, tiers)
        while member.tier_expires is not None and member.tier_expires <= today:
            change = await _review_one(meter, tiers, member)
            if change is not None:
                if now is not None:
                    change.at = now
                session.add(change)
                changes.append(change)
        session.add(member)
    await session.flush()
    return changes


async def _review_one(meter: Meter, tiers: TierRules, member: Member) -> TierChange | None:
    expires = member.tier_expires
    level = tiers.find(member.tier)
    if expires is None or level is None or level.valid_months is None:
        member.tier_expires = None  # the rules no longer give this tier an end
        return None
    validity = validity_window(expires, level.valid_months)
    for rule in level.renew:
        if await meter.renew_met(rule, validity):
            member.tier_expires = add_months(expires, level.valid_months)
            return TierChange(
                member_id=member.id,
                from_tier=level.code,
                to_tier=level.code,
                on=expires,
                reason="renewed",
            )
    lower = tiers.levels[tiers.index(level.code) - 1]
    change = TierChange(
        member_id=member.id, from_tier=level.code, to_tier=lower.code, on=expires, reason="lapsed"
    )
    member.tier = lower.code
    member.tier_since = expires
    member.tier_expires = add_months(expires, lower.valid_months) if lower.valid_months else None
    return change


def is_review_day(tiers: TierRules, today: date) -> bool:
    """The first day of the annual tier period (`TierRules.period_start`)."""
    month, day = (int(part) for part in tiers.period_start.split("-"))
    return (today.month, today.day) == (month, day)


async def review_upgrades(
    session: AsyncSession, *, rules: LoyaltyRules, today: date, now: datetime
) -> list[TierChange]:
    """On the review day, every member eligible for a level that takes effect at the
    review gets it (reason ``review_upgrade``; the card application opens for a level
    with a card). Any other day: nothing. Idempotent: the eligibility is cleared."""
    tiers = rules.tiers
    if not is_review_day(tiers, today):
        return []
    codes = [lv.code for lv in tiers.levels if lv.effective == "on_review"]
    if not codes:
        return []
    stmt = (
        select(Member)
        .where(col(Member.eligible_tier).in_(codes))
        .order_by(col(Member.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    changes: list[TierChange] = []
    for member in list(await session.exec(stmt)):
        level = tiers.find(member.eligible_tier)
        member.eligible_tier, member.eligible_since = None, None
        session.add(member)
        if level is None or tiers.index(level.code) <= tiers.index(member.tier):
            continue
        change = set_tier(
            member, level, on=today, reason="review_upgrade", at=now, entry=tiers.entry.code
        )
        session.add(change)
        changes.append(change)
        if level.requires_card and level.apply == "auto":
            await cards.open_application(
                session, member=member, tier=level.code, actor="system", now=now, rules=rules,
                store_id=member.store_id, assistant_id=member.assistant_id,
                note="tier review",
            )  # fmt: skip
    await session.flush()
    return changes
