"""Returns of items of a recorded sale (CONTRACT.md `POST /api/returns`; the rules are in
docs/loyalty-rules.md "Returns").

`record_return`, in the caller's transaction:

1. the sale is found by its receipt number (unknown → `NotFound` "receipt_no"); the
   member's row lock is taken first, so returns of one member run one at a time and a
   twin of the same ``return_no`` finds the first one committed;
2. the same ``return_no`` again answers the recorded return (another receipt under it
   → `Conflict`);
3. every item must be on the receipt (by ``sku``) and, counting earlier returns, no
   more may come back than was bought, in quantity and in amount (`InvalidInput`,
   422). A receipt recorded without items takes returns by amount only;
4. points: the sale's points (multipliers included: item, birthday, double day) times
   the returned share of the sale's *weighted* amount (each line's amount × the item
   multiplier it earned under), reckoned cumulatively so that returning everything
   takes back exactly what the sale earned; posted as a ``return`` entry (key
   ``return:<id>``), which may take the balance below zero (`models.ledger`);
5. the referrer's share of that sale (``referral:<purchase id>``) falls by the
   returned share of the amount, a ``return`` entry of the referrer's;
6. the member's cumulative spend falls by the returned amount, and the tier is
   re-evaluated (`models.tiers.returned`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import local_date as brand_date
from models.errors import Conflict, InvalidInput, NotFound
from models.ledger import LEDGER, MEMBERS, latest, lock_member, sync_member
from models.points import post_points
from models.purchases.earning import item_multiplier
from models.purchases.input import MAX_QTY, Yuan, iso_datetime, whole_count
from models.rules import LoyaltyRules
from models.tables.members import Member
from models.tables.purchases import Purchase, PurchaseItem
from models.tables.till import ReturnItem, SaleReturn
from models.tiers.returned import reevaluate_after_return


class ReturnItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    sku: Annotated[str, Field(max_length=64)] = ""
    qty: Annotated[int, Field(ge=1, le=MAX_QTY), BeforeValidator(whole_count)] = 1
    amount: Yuan


class ReturnIn(BaseModel):
    """A return as the API and the CSV import receive it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    return_no: Annotated[str, Field(min_length=1, max_length=64)]
    receipt_no: Annotated[str, Field(min_length=1, max_length=64)]
    at: Annotated[datetime, BeforeValidator(iso_datetime)]
    items: Annotated[list[ReturnItemIn], Field(min_length=1, max_length=500)]


def _total(items) -> Decimal:
    return sum((i.amount for i in items), Decimal(0))


async def _earlier(session: AsyncSession, purchase_id: int):
    """(earlier returns of the sale, their items)."""
    rets = list(
        (await session.exec(select(SaleReturn).where(SaleReturn.purchase_id == purchase_id))).all()
    )
    ids = [r.id for r in rets]
    items = []
    if ids:
        stmt = select(ReturnItem).where(ReturnItem.return_id.in_(ids))
        items = list((await session.exec(stmt)).all())
    return rets, items


def _check_quantities(sold: list[PurchaseItem], before: list, now: list[ReturnItemIn]) -> None:
    """No more back than was bought, per sku, in quantity and amount (earlier returns too)."""
    bought_qty: dict[str, int] = defaultdict(int)
    bought_amount: dict[str, Decimal] = defaultdict(Decimal)
    for line in sold:
        bought_qty[line.sku] += line.qty
        bought_amount[line.sku] += line.amount
    back_qty: dict[str, int] = defaultdict(int)
    back_amount: dict[str, Decimal] = defaultdict(Decimal)
    for line in [*before, *now]:
        back_qty[line.sku] += line.qty
        back_amount[line.sku] += line.amount
    for sku in back_qty:
        if sku not in bought_qty:
            raise InvalidInput(f"sku {sku!r} is not on the receipt", "items")
        if back_qty[sku] > bought_qty[sku] or back_amount[sku] > bought_amount[sku]:
            raise InvalidInput(
                f"more of sku {sku!r} would come back than was bought "
                f"({back_qty[sku]} of {bought_qty[sku]}, {back_amount[sku]:.2f} "
                f"of {bought_amount[sku]:.2f} yuan, earlier returns counted)",
                "items",
            )


def _share(rules: LoyaltyRules, sold: list[PurchaseItem], sale: Purchase, back: list) -> Fraction:
    """The returned share of the sale's weighted amount (item multipliers as earned)."""
    if not sold:
        return Fraction(_total(back)) / Fraction(sale.amount)
    mult = {line.sku: item_multiplier(rules.points, line) for line in sold}
    whole = sum((Fraction(line.amount) * Fraction(mult[line.sku]) for line in sold), Fraction(0))
    if whole == 0:
        return Fraction(_total(back)) / Fraction(sale.amount)
    part = sum((Fraction(line.amount) * Fraction(mult[line.sku]) for line in back), Fraction(0))
    return min(part / whole, Fraction(1))


async def _referral_points(session: AsyncSession, purchase_id: int) -> tuple[int | None, int]:
    stmt = select(LEDGER.c.member_id, LEDGER.c.delta).where(
        LEDGER.c.key == f"referral:{purchase_id}"
    )
    row = (await session.exec(stmt)).first()
    return (row[0], int(row[1])) if row else (None, 0)


async def _existing(session: AsyncSession, data: ReturnIn) -> SaleReturn | None:
    stmt = select(SaleReturn).where(SaleReturn.return_no == data.return_no)
    found = (await session.exec(stmt)).first()
    if found is None:
        return None
    sale = await session.get(Purchase, found.purchase_id)
    if sale is None or sale.receipt_no != data.receipt_no:
        raise Conflict(f"return {data.return_no} is recorded for another receipt", "return_no")
    return found


async def record_return(
    session: AsyncSession, *, rules: LoyaltyRules, tz: ZoneInfo, data: ReturnIn
) -> tuple[SaleReturn, bool]:
    """Record a return of items of a recorded sale; (return, True if recorded now)."""
    found = await _existing(session, data)
    if found is not None:
        return found, False
    stmt = select(Purchase).where(Purchase.receipt_no == data.receipt_no)
    sale = (await session.exec(stmt)).first()
    if sale is None:
        raise NotFound("no sale with this receipt number", "receipt_no")
    await lock_member(session, sale.member_id)
    found = await _existing(session, data)  # a twin committed while we waited
    if found is not None:
        return found, False
    at = data.at if data.at.tzinfo is not None else data.at.replace(tzinfo=tz)
    if at < sale.at:
        raise InvalidInput("a return cannot come before the sale", "at")
    sold = list(
        (await session.exec(select(PurchaseItem).where(PurchaseItem.purchase_id == sale.id))).all()
    )
    earlier, earlier_items = await _earlier(session, sale.id)
    back_before = sum((r.amount for r in earlier), Decimal(0))
    amount = _total(data.items)
    if sold:
        _check_quantities(sold, earlier_items, data.items)
    if back_before + amount > sale.amount:
        raise InvalidInput(
            f"{back_before + amount:.2f} yuan would come back of a {sale.amount:.2f} yuan sale "
            "(earlier returns counted)",
            "items",
        )
    everything = back_before + amount == sale.amount
    share = Fraction(1) if everything else _share(rules, sold, sale, [*earlier_items, *data.items])
    points = math.floor(sale.points * share) - sum(r.points for r in earlier)
    referrer_id, referral = await _referral_points(session, sale.id)
    amount_share = Fraction(back_before + amount) / Fraction(sale.amount)
    referral_back = math.floor(referral * amount_share) - sum(r.referral_points for r in earlier)
    day = brand_date(at, tz)
    ret = SaleReturn(
        return_no=data.return_no,
        purchase_id=sale.id,
        member_id=sale.member_id,
        at=at,
        local_date=day,
        sale_date=sale.local_date,
        amount=amount,
        points=max(points, 0),
        referral_points=max(referral_back, 0),
    )
    session.add(ret)
    await session.flush()
    session.add_all(
        ReturnItem(return_id=ret.id, sku=i.sku, qty=i.qty, amount=i.amount) for i in data.items
    )
    note = f"return {data.return_no} of receipt {sale.receipt_no}"
    common = dict(rules=rules.points, at=at, local_date=day, purchase_id=sale.id, check_key=False)
    if ret.points > 0:
        await post_points(
            session,
            member_id=sale.member_id,
            delta=-ret.points,
            reason="return",
            key=f"return:{ret.id}",
            note=note,
            **common,
        )
    if ret.referral_points > 0 and referrer_id is not None:
        await post_points(
            session,
            member_id=referrer_id,
            delta=-ret.referral_points,
            reason="return",
            key=f"return-referral:{ret.id}",
            note=f"referral share, {note}",
            **common,
        )
    await _spend_falls(session, member_id=sale.member_id, amount=amount, at=at)
    member = await session.get(Member, sale.member_id)
    await reevaluate_after_return(session, rules=rules, member=member, sale=sale, today=day)
    await session.flush()
    return ret, True


async def _spend_falls(
    session: AsyncSession, *, member_id: int, amount: Decimal, at: datetime
) -> None:
    c = MEMBERS.c
    stmt = (
        MEMBERS.update()
        .where(c.id == member_id)
        .values(
            cumulative_spend=func.max(c.cumulative_spend - amount, 0)
            if session.bind.dialect.name == "sqlite"
            else func.greatest(c.cumulative_spend - amount, 0),
            updated_at=latest(c.updated_at, at),
        )
        .returning(c.cumulative_spend, c.updated_at)
    )
    row = (await session.exec(stmt)).one()
    sync_member(session, member_id, **row._asdict())


async def return_items(session: AsyncSession, *, return_id: int) -> list[ReturnItem]:
    stmt = select(ReturnItem).where(ReturnItem.return_id == return_id).order_by(ReturnItem.id)
    return list((await session.exec(stmt)).all())
