"""The referrer's share of a new member's first purchase (000: 30 %; the ledger entry
``referral:<purchase id>`` is described in `models.purchases`)."""

from __future__ import annotations

import math
from decimal import Decimal

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.points import post_points
from models.rules import PointsRules
from models.tables.members import Member
from models.tables.purchases import Purchase


def referral_points(rules: PointsRules, amount: Decimal) -> int:
    """The referrer's share of a first purchase of `amount` yuan."""
    return math.floor(amount * rules.referral_share)


def referral_key(purchase_id: int) -> str:
    return f"referral:{purchase_id}"


def referral_note(member_id: int) -> str:
    return f"first purchase of member {member_id}"


async def credit_referrer(
    session: AsyncSession,
    *,
    rules: PointsRules,
    member: Member,
    purchase: Purchase,
    referrer_phone: str,
) -> None:
    """The referrer's share of a new member's first purchase (000: 30 %); never to oneself."""
    found = (await session.exec(select(Member).where(Member.phone == referrer_phone))).first()
    if found is None or found.id == member.id:
        return
    referrer = found
    points = referral_points(rules, purchase.amount)
    purchase.referrer_id = referrer.id
    if member.referrer_id is None:
        member.referrer_id = referrer.id
    session.add(member)
    if points > 0:
        await post_points(
            session,
            rules=rules,
            member_id=referrer.id,
            delta=points,
            reason="referral",
            key=referral_key(purchase.id),
            at=purchase.at,
            local_date=purchase.local_date,
            purchase_id=purchase.id,
            note=referral_note(member.id),
            check_key=False,
        )
