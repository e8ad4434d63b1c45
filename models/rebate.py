"""004's annual rebate (`points.rebate`, off by default; on in examples/scheme-c.toml): on
the rebate day the daily job turns each member's whole positive balance into a voucher
worth ``balance × rate`` yuan (rounded down to the cent) and clears the points.

One ``rebate`` ledger entry per member and year (key ``rebate:<member>:<year>``) and a
voucher (reward ``rebate``, its redemption key the same) in the same transaction, so a
rerun changes nothing. It runs before that day's expiry (`scheduler.jobs`) and posts
without expiring first: the points of the period that just ended are rebated, not lost.
Voiding a rebate voucher gives the points back, like any voucher.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.ledger import MEMBERS, key_exists, lock_member, write_entry
from models.rules import PointsRules
from models.tables.ledger import Voucher
from models.vouchers import new_code


def rebate_due(rules: PointsRules, today: date) -> bool:
    return rules.rebate.enabled and today.strftime("%m-%d") == rules.rebate.day


async def run_rebate(
    session: AsyncSession, *, rules: PointsRules, today: date, now: datetime
) -> int:
    """The rebate of `today` if it is the rebate day; the number of vouchers issued."""
    if not rebate_due(rules, today):
        return 0
    stmt = select(MEMBERS.c.id).where(MEMBERS.c.points > 0).order_by(MEMBERS.c.id)
    issued = 0
    for member_id in (await session.exec(stmt)).all():
        key = f"rebate:{member_id}:{today.year}"
        if await key_exists(session, key):
            continue
        points = await lock_member(session, member_id)
        value = (Decimal(points) * rules.rebate.rate).quantize(Decimal("0.01"), ROUND_DOWN)
        if points <= 0 or value <= 0:
            continue
        entry = await write_entry(
            session,
            member_id=member_id,
            delta=-points,
            reason="rebate",
            key=key,
            at=now,
            local_date=today,
            expires_on=None,
            note=f"{points} points at {rules.rebate.rate} yuan each",
        )
        if entry is None:
            continue
        session.add(
            Voucher(
                code=new_code(),
                member_id=member_id,
                reward_code="rebate",
                value=value,
                status="issued",
                issued_at=now,
                expires_on=today + timedelta(days=rules.rebate.valid_days),
                redemption_key=key,
                entry_id=entry.id,
            )
        )
        issued += 1
    await session.flush()
    return issued
