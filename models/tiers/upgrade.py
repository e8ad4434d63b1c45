"""Upgrades after a purchase (`evaluate_after_purchase`), the tier a member is waiting
for (`pending_tier`), and members flagged eligible but not applied (`eligible_not_applied`);
the rules are described in `models.tiers`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, tzinfo

from sqlalchemy import exists
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards
from models.clock import add_months
from models.rules import LoyaltyRules, TierLevel, TierRules
from models.tables.cards import CardApplication
from models.tables.ledger import TierChange
from models.tables.members import Member
from models.tables.purchases import Purchase
from models.tiers.meter import Meter


async def pending_tier(session: AsyncSession, *, rules: LoyaltyRules, member: Member) -> str | None:
    """The highest tier the member is waiting for (flagged eligible, or a card application
    not yet approved) above their effective tier, for levels that take effect on approval
    or still need a card applied for; None if there is none."""
    applications = await _open_application_tiers(session, rules, member.id)
    return pending_from(
        rules.tiers, tier=member.tier, eligible=member.eligible_tier, applications=applications
    )


async def _open_application_tiers(
    session: AsyncSession, rules: LoyaltyRules, member_id: int
) -> list[str]:
    """The tiers of the member's open card applications, when they can matter."""
    if not needs_applications(rules.tiers):
        return []
    rows = await session.exec(
        select(CardApplication.tier).where(
            CardApplication.member_id == member_id, col(CardApplication.status).in_(cards.OPEN)
        )
    )
    return list(rows)


def needs_applications(tiers: TierRules) -> bool:
    """Whether an open card application can hold a tier back (some level takes effect on
    approval); if not, `pending_from` needs no applications."""
    return any(level.effective == "on_approval" for level in tiers.levels)


def pending_from(
    tiers: TierRules, *, tier: str, eligible: str | None, applications: Iterable[str]
) -> str | None:
    """`pending_tier` from what it reads: the member's tier and flagged eligible tier, and
    the tiers of their open card applications."""
    best = tiers.index(tier)
    found: str | None = None
    if eligible and tiers.find(eligible) and tiers.index(eligible) > best:
        best, found = tiers.index(eligible), eligible
    for code in applications:
        level = tiers.find(code)
        if level is not None and level.effective == "on_approval" and tiers.index(code) > best:
            best, found = tiers.index(code), code
    return found


def base_index(rules: LoyaltyRules, member: Member, applications: Iterable[str]) -> int:
    """The level an upgrade starts from: the member's tier, or the tier they are waiting
    for (`pending_from`, given their open applications' tiers), or a level already earned
    and waiting for the review."""
    tiers = rules.tiers
    pending = pending_from(
        tiers, tier=member.tier, eligible=member.eligible_tier, applications=applications
    )
    base = tiers.index(pending if pending else member.tier)
    waiting = tiers.find(member.eligible_tier) if member.eligible_tier else None
    if waiting is not None and waiting.effective == "on_review":  # already earned
        base = max(base, tiers.index(waiting.code))
    return base


async def upgrade_target(
    tiers: TierRules, *, base: int, meter: Meter, purchase: Purchase
) -> TierLevel | None:
    """The level an upgrade after `purchase` moves to from level `base`: the highest level
    above it with a reach rule met (one step up with ``stepwise``); None if none is met."""
    if base >= len(tiers.levels) - 1:
        return None
    reached = base
    for index in range(len(tiers.levels) - 1, base, -1):
        for rule in tiers.levels[index].reach:
            if await meter.reach_met(rule, purchase):
                reached = index
                break
        if reached != base:
            break
    if reached == base:
        return None
    return tiers.levels[base + 1 if tiers.stepwise else reached]


APPLY = "apply"
"""`apply_upgrade`'s card step: open a card application for the target now."""
FLAG = "flag"
"""`apply_upgrade`'s card step: flag the member eligible unless an application for the
target is already under way."""


def apply_upgrade(
    tiers: TierRules, *, member: Member, target: TierLevel, purchase: Purchase
) -> tuple[dict, str]:
    """Change `member` (in memory) for an upgrade to `target` after `purchase`; the values
    of the TierChange to record and the card step left to do ("", `APPLY` or `FLAG`), per
    the table of `models.tiers`."""
    on, at, entry = purchase.local_date, purchase.at, tiers.entry.code
    if target.effective == "on_eligible":
        change = tier_change(member, target, on=on, reason="upgrade", at=at, entry=entry)
        move_tier(member, target, on=on)
    else:
        change = tier_change(member, target, on=on, reason="eligible", at=at, entry=entry)
    if target.effective == "on_review":  # the review applies it (and opens the card)
        member.eligible_tier, member.eligible_since = target.code, on
        return change, ""
    if not target.requires_card:
        return change, ""
    return change, APPLY if target.apply == "auto" else FLAG


def card_note(purchase: Purchase) -> str:
    return f"receipt {purchase.receipt_no}"


def tier_change(
    member: Member, level: TierLevel, *, on: date, reason: str, at: datetime, entry: str
) -> dict:
    """The values of the TierChange of `member` to `level`."""
    return dict(
        member_id=member.id,
        from_tier=member.tier or entry,
        to_tier=level.code,
        on=on,
        reason=reason,
        at=at,
    )


def move_tier(member: Member, level: TierLevel, *, on: date) -> None:
    member.tier = level.code
    member.tier_since = on
    member.tier_expires = add_months(on, level.valid_months) if level.valid_months else None


def set_tier(
    member: Member, level: TierLevel, *, on: date, reason: str, at: datetime, entry: str
) -> TierChange:
    change = TierChange(**tier_change(member, level, on=on, reason=reason, at=at, entry=entry))
    move_tier(member, level, on=on)
    return change


async def evaluate_after_purchase(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    member: Member,
    purchase: Purchase,
    tz: tzinfo | None = None,
) -> TierChange | None:
    """Upgrade (or flag, or apply for) the member after `purchase` has been recorded.

    Call it after the purchase row and its points are written, in the same transaction
    (the purchase path holds the member's row lock). Returns the TierChange recorded
    (reason ``upgrade`` or ``eligible``), or None when nothing changed. Windows are
    reckoned on ``purchase.local_date``, already the brand day, so `tz` is not needed
    and accepted only for callers that pass it.
    """
    applications = await _open_application_tiers(session, rules, member.id)
    base = base_index(rules, member, applications)
    meter = Meter(session, member.id, rules.tiers)
    target = await upgrade_target(rules.tiers, base=base, meter=meter, purchase=purchase)
    if target is None:
        return None
    values, card = apply_upgrade(rules.tiers, member=member, target=target, purchase=purchase)
    change = TierChange(**values)
    session.add(member)
    session.add(change)
    if card == APPLY:
        await cards.open_application(
            session,
            member=member,
            tier=target.code,
            actor="system",
            now=purchase.at,
            rules=rules,
            store_id=purchase.store_id,
            assistant_id=purchase.assistant_id or member.assistant_id,
            note=card_note(purchase),
        )
    elif card == FLAG and not await _has_active_application(session, member.id, target.code):
        member.eligible_tier = target.code
        member.eligible_since = purchase.local_date
        session.add(member)
    await session.flush()
    return change


async def _has_active_application(session: AsyncSession, member_id: int, tier: str) -> bool:
    rows = await session.exec(
        select(CardApplication.id).where(
            CardApplication.member_id == member_id,
            CardApplication.tier == tier,
            col(CardApplication.status).in_(cards.ACTIVE),
        )
    )
    return rows.first() is not None


async def eligible_not_applied(
    session: AsyncSession, *, rules: LoyaltyRules, store_id: int | None = None
) -> list[Member]:
    """Members flagged eligible for a card tier with no card application under way for it
    (DOMAIN.md §3, 003), longest-waiting first; optionally one store's members."""
    codes = [  # a level waiting for the tier review is not waiting for staff
        lv.code for lv in rules.tiers.levels if lv.requires_card and lv.effective != "on_review"
    ]
    under_way = exists().where(
        CardApplication.member_id == Member.id,
        CardApplication.tier == Member.eligible_tier,
        col(CardApplication.status).in_(cards.ACTIVE),
    )
    stmt = select(Member).where(col(Member.eligible_tier).in_(codes), ~under_way)
    if store_id is not None:
        stmt = stmt.where(Member.store_id == store_id)
    rows = await session.exec(stmt.order_by(col(Member.eligible_since), col(Member.id)))
    return list(rows)
