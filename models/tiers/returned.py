"""The tier after a return (`reevaluate_after_return`; the house rule is in
docs/loyalty-rules.md "Returns and the tier").

The tier measures net returns out of the sale they return (`models.tiers.meter`), so
reviews and later upgrades already count a returned sale as smaller. Right after a
return, the member's current tier is judged again when it was reached by an upgrade
on or after the returned sale's day: if no reach rule of that level is still met on
the upgrade's day (netted measures; ``single_purchase``: the largest netted sale of
that day), the member goes back to the tier they came from (TierChange ``returned``).
A flagged eligible tier no longer reached on its day is unflagged the same way. Card
applications already opened are left to staff (the tracker shows them).
"""

from __future__ import annotations

from datetime import date

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import add_months
from models.rules import LoyaltyRules, TierLevel
from models.tables.ledger import TierChange
from models.tables.members import Member
from models.tables.purchases import Purchase
from models.tiers.meter import Meter
from models.tiers.windows import window_span


async def _still_reached(meter: Meter, level: TierLevel, day: date, period_start: str) -> bool:
    for rule in level.reach:
        if rule.window == "single_purchase":
            value = await meter.value(rule.measure, (day, day), largest=True)
        else:
            value = await meter.value(
                rule.measure, window_span(rule.window, day, period_start=period_start)
            )
        if value >= rule.threshold:
            return True
    return False


async def _last_change(
    session: AsyncSession, member_id: int, to: str, reasons
) -> TierChange | None:
    stmt = (
        select(TierChange)
        .where(
            TierChange.member_id == member_id,
            TierChange.to_tier == to,
            col(TierChange.reason).in_(reasons),
        )
        .order_by(col(TierChange.id).desc())
    )
    return (await session.exec(stmt)).first()


def _validity_end(since: date, months: int | None, today: date) -> date | None:
    if not months:
        return None
    end = add_months(since, months)
    while end <= today:
        end = add_months(end, months)
    return end


async def reevaluate_after_return(
    session: AsyncSession, *, rules: LoyaltyRules, member: Member, sale: Purchase, today: date
) -> TierChange | None:
    """Undo an upgrade the returned sale no longer carries; the TierChange, or None."""
    tiers = rules.tiers
    meter = Meter(session, member.id, tiers)
    if member.eligible_tier and member.eligible_since and member.eligible_since >= sale.local_date:
        level = tiers.find(member.eligible_tier)
        if level is not None and not await _still_reached(
            meter, level, member.eligible_since, tiers.period_start
        ):
            member.eligible_tier = member.eligible_since = None
            session.add(member)
    change = await _last_change(session, member.id, member.tier, ("upgrade", "card_approved"))
    if change is None or change.on < sale.local_date:
        return None
    level = tiers.find(member.tier)
    if level is None or await _still_reached(meter, level, change.on, tiers.period_start):
        return None
    back = tiers.find(change.from_tier) or tiers.entry
    before = await _last_change(
        session, member.id, back.code, ("upgrade", "card_approved", "renewed", "lapsed")
    )
    member.tier = back.code
    member.tier_since = before.on if before else member.join_date
    member.tier_expires = _validity_end(member.tier_since, back.valid_months, today)
    session.add(member)
    undo = TierChange(
        member_id=member.id, from_tier=level.code, to_tier=back.code, on=today, reason="returned"
    )
    session.add(undo)
    return undo
