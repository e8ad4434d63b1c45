"""Card applications made by staff for a member (`apply_for_card`) and the member's
applications (`card_applications`); the card tracker itself is `models.cards`."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards
from models.errors import Conflict, InvalidInput
from models.rules import LoyaltyRules
from models.tables.cards import CardApplication
from models.tables.members import Member


async def apply_for_card(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    member: Member,
    tier: str,
    actor: str,
    now: datetime,
) -> tuple[CardApplication, bool]:
    """Staff apply for a card for a member who has reached (or is eligible for) `tier`
    (DOMAIN.md §3 Scheme B: the assistant fills the application; 003 flags eligible
    members who have not applied). Returns (application, created); an application
    already under way for that tier is returned as it is.

    Unknown tier or a tier without a card → InvalidInput (field "tier"); a tier above
    both the member's tier and their eligible tier → Conflict (field "tier").
    """
    level = rules.tiers.find(tier)
    if level is None:
        raise InvalidInput(f"unknown tier {tier!r}", "tier")
    if not level.requires_card:
        raise InvalidInput(f"tier {tier!r} has no card to apply for", "tier")
    existing = (
        await session.exec(
            select(CardApplication).where(
                CardApplication.member_id == member.id,
                CardApplication.tier == tier,
                col(CardApplication.status).in_(cards.ACTIVE),
            )
        )
    ).first()
    if existing is not None:
        return existing, False
    index = rules.tiers.index
    reached = max(index(member.tier), index(member.eligible_tier) if member.eligible_tier else 0)
    if index(tier) > reached:
        raise Conflict(f"the member is not eligible for tier {tier!r}", "tier")
    app = await cards.open_application(
        session, member=member, tier=tier, actor=actor, now=now, rules=rules
    )
    return app, True


async def card_applications(session: AsyncSession, *, member_id: int) -> list[CardApplication]:
    """The member's card applications, oldest first."""
    rows = await session.exec(
        select(CardApplication)
        .where(CardApplication.member_id == member_id)
        .order_by(CardApplication.id)
    )
    return list(rows.all())
