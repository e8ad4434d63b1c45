"""000's automatic voucher (`rewards.auto`, off by default): when a member's purchase
points within a year reach the threshold, the catalogue reward is issued by itself and
its cost deducted (DOMAIN.md §2 "Redemption", 000 §17).

`after_purchase` runs in the sale's transaction (`models.purchases.record`). The year is
the 365 brand days ending on the sale's day; its points are the ``purchase`` and
``birthday_bonus`` entries less the ``return`` entries of those days; every automatic
voucher issued in the same year (redemption key ``auto:<purchase id>``) used up one
threshold of them. So a member crosses 3,000 once, 6,000 a second time, and a
re-sent receipt issues nothing twice (the key). The balance must cover the cost (a
member who already spent the points by message gets nothing more). The member hears of
it through the `voucher_issued` service notice the next day (`scheduler`).
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import day_start
from models.errors import InsufficientPoints
from models.rules import LoyaltyRules
from models.tables.ledger import PointsEntry, Voucher
from models.tables.members import Member
from models.tables.purchases import Purchase
from models.vouchers import redeem

AUTO_PREFIX = "auto:"
EARNED = ("purchase", "birthday_bonus", "return")


async def after_purchase(
    session: AsyncSession, *, rules: LoyaltyRules, tz: ZoneInfo, member: Member, purchase: Purchase
) -> Voucher | None:
    """Issue the automatic voucher this sale earns, if any; the voucher, or None."""
    auto = rules.rewards.auto
    reward = rules.rewards.by_code(auto.reward)
    if not auto.enabled or reward is None:
        return None
    first = purchase.local_date - timedelta(days=364)
    earned = (
        await session.exec(
            select(func.coalesce(func.sum(PointsEntry.delta), 0)).where(
                PointsEntry.member_id == member.id,
                col(PointsEntry.reason).in_(EARNED),
                PointsEntry.local_date >= first,
                PointsEntry.local_date <= purchase.local_date,
            )
        )
    ).one()
    issued = (
        await session.exec(
            select(func.count()).where(
                Voucher.member_id == member.id,
                col(Voucher.redemption_key).startswith(AUTO_PREFIX),
                Voucher.issued_at >= day_start(first, tz),
            )
        )
    ).one()
    if int(earned) - issued * auto.threshold < auto.threshold:
        return None
    try:  # refused before anything is written: the sale's transaction goes on
        voucher, _ = await redeem(
            session,
            rules=rules,
            tz=tz,
            member_id=member.id,
            reward_code=reward.code,
            key=f"{AUTO_PREFIX}{purchase.id}",
            now=purchase.at,
        )
    except InsufficientPoints:
        return None
    return voucher
