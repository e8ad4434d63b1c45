"""Measuring a member's purchases for tier rules: a measure summed over a window, and
whether a reach or renew rule is met (`Meter`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import BigInteger, func, type_coerce
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.rules import Measure, TierRule, TierRules
from models.tables.purchases import Purchase
from models.tables.till import SaleReturn
from models.tiers.windows import Span, window_span
from models.types import from_cents


async def measure_total(
    session: AsyncSession,
    *,
    member_id: int,
    measure: Measure,
    span: Span,
    largest: bool = False,
) -> Decimal:
    """Sum (or, with `largest`, the biggest single purchase) of `measure` over `span`.

    Points come back as whole Decimals, spend in yuan (the column holds cents). Returns
    (`models.returns`) are netted out on the day of the sale they return.
    """
    column = Purchase.points if measure == "points" else Purchase.amount
    back = SaleReturn.points if measure == "points" else SaleReturn.amount
    start, end = span
    if largest:  # each sale less its returns, then the largest
        returned = (
            select(SaleReturn.purchase_id, func.sum(back).label("back"))
            .where(SaleReturn.member_id == member_id)
            .group_by(SaleReturn.purchase_id)
            .subquery()
        )
        net = column - func.coalesce(returned.c.back, 0)
        stmt = select(type_coerce(func.coalesce(func.max(net), 0), BigInteger())).outerjoin(
            returned, returned.c.purchase_id == Purchase.id
        )
    else:
        stmt = select(type_coerce(func.coalesce(func.sum(column), 0), BigInteger()))
    stmt = stmt.where(Purchase.member_id == member_id)
    if start is not None:
        stmt = stmt.where(Purchase.local_date >= start)
    if end is not None:
        stmt = stmt.where(Purchase.local_date <= end)
    raw = (await session.exec(stmt)).one()
    if not largest:  # returns fall on the day of the sale they return
        less = select(type_coerce(func.coalesce(func.sum(back), 0), BigInteger())).where(
            SaleReturn.member_id == member_id
        )
        if start is not None:
            less = less.where(SaleReturn.sale_date >= start)
        if end is not None:
            less = less.where(SaleReturn.sale_date <= end)
        raw -= (await session.exec(less)).one()
    return Decimal(raw) if measure == "points" else from_cents(raw)


def _of_purchase(purchase: Purchase, what: Measure) -> Decimal:
    return Decimal(purchase.points) if what == "points" else Decimal(purchase.amount)


class Meter:
    """Measures rules for one evaluation, querying each (measure, span) once."""

    def __init__(self, session: AsyncSession, member_id: int, tiers: TierRules):
        self.session, self.member_id, self.tiers = session, member_id, tiers
        self._cache: dict[tuple, Decimal] = {}

    async def value(self, what: Measure, span: Span, largest: bool = False) -> Decimal:
        key = (what, span, largest)
        if key not in self._cache:
            self._cache[key] = await self.measure(what, span, largest)
        return self._cache[key]

    async def measure(self, what: Measure, span: Span, largest: bool) -> Decimal:
        """`measure_total` of this member (a bulk replay measures its loaded history)."""
        return await measure_total(
            self.session, member_id=self.member_id, measure=what, span=span, largest=largest
        )

    async def reach_met(self, rule: TierRule, purchase: Purchase) -> bool:
        if rule.window == "single_purchase":
            return _of_purchase(purchase, rule.measure) >= rule.threshold
        span = window_span(rule.window, purchase.local_date, period_start=self.tiers.period_start)
        return await self.value(rule.measure, span) >= rule.threshold

    async def renew_met(self, rule: TierRule, validity: tuple[date, date]) -> bool:
        start, last = validity
        if rule.window == "validity":
            value = await self.value(rule.measure, validity)
        elif rule.window == "single_purchase":
            value = await self.value(rule.measure, validity, largest=True)
        elif rule.window == "cumulative":
            value = await self.value(rule.measure, (None, last))
        else:
            span = window_span(rule.window, last, period_start=self.tiers.period_start)
            value = await self.value(rule.measure, span)
        return value >= rule.threshold
