"""What a purchase batch leaves to the one-by-one path (`left_out`, see
`models.bulk.receipts`), and the buyers of the stored sales its returns name
(`sold_here`)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.bulk.state import MemberState, among
from models.db import is_postgres
from models.ledger import MEMBERS
from models.purchases.input import PurchaseIn
from models.returns import ReturnIn
from models.tables.purchases import Purchase


async def sold_here(session: AsyncSession, receipts: set[str]) -> dict[str, tuple]:
    """Receipt number → (buyer's phone, referrer's phone) of stored sales."""
    if not receipts:
        return {}
    p = Purchase.__table__.c
    buyer, referrer = MEMBERS.alias("b"), MEMBERS.alias("r")
    stmt = (
        select(p.receipt_no, buyer.c.phone, referrer.c.phone)
        .join(buyer, buyer.c.id == p.member_id)
        .outerjoin(referrer, referrer.c.id == p.referrer_id)
        .where(among(p.receipt_no, receipts, is_postgres(session)))
    )
    return {r[0]: (r[1], r[2]) for r in (await session.exec(stmt)).all()}


def left_out(
    buyer: Callable[[PurchaseIn], MemberState | None],
    records: list,
    returned: dict[str, tuple],
    owing: set[str],
) -> tuple[set[int], set[str], dict[str, tuple]]:
    """The indexes of the records the replay leaves to the one-by-one path; the phones
    (``card:`` keys for unknown cards) those records touch; receipt number → (buyer,
    referrer) of the batch's sales and of the stored sales its returns name."""

    def phone_of(d: PurchaseIn) -> str:
        m = buyer(d)
        return m.phone if m is not None else d.phone or f"card:{d.card_no}"

    hard = set(owing)
    sold: dict[str, tuple] = dict(returned)
    for d in records:
        if isinstance(d, ReturnIn):
            hard.update(p for p in sold.get(d.receipt_no, ()) if p)
        else:
            sold[d.receipt_no] = (phone_of(d), d.referrer)
            if d.vouchers:
                hard.add(phone_of(d))
    referrals = [(phone_of(d), d.referrer) for d in records if isinstance(d, PurchaseIn)]
    referrals = [pair for pair in referrals if pair[1]]
    grew = True
    while grew:  # a referral joins its two members' fates
        grew = False
        for buyer_phone, referrer in referrals:
            if (buyer_phone in hard) != (referrer in hard):
                hard.update((buyer_phone, referrer))
                grew = True
    left = {i for i, d in enumerate(records) if isinstance(d, ReturnIn) or phone_of(d) in hard}
    return left, hard, sold
