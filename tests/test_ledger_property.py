"""Property: whatever the till does — sales (with item multipliers, a referrer, vouchers),
returns (valid or too much), redemptions, voucher uses and voids, adjustments of either
sign, the daily expiry — after every step, for every member, ledger sum = balance = open
lots, and a refused step changes nothing. Random sequences (hypothesis), both engines."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from models.db import make_engine, session_factory, transaction
from models.errors import DomainError
from models.points import expire_due
from models.points_reads import balance_check
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.purchases.visits import adjust_points
from models.returns import ReturnIn, record_return
from models.rules import ExpiryRules, LoyaltyRules, PointsRules
from models.tables.ledger import Voucher
from models.tables.members import Member, Store
from models.tables.purchases import Purchase, PurchaseItem
from models.voucher_till import use_voucher, void_voucher
from models.vouchers import redeem

TZ = ZoneInfo("Asia/Shanghai")
RULES = LoyaltyRules(
    points=PointsRules(
        multipliers={"suits": Decimal("2")},
        expiry=ExpiryRules(policy="months", months=2),
    )
)
START = datetime(2026, 1, 5, 4, tzinfo=UTC)
RUN = itertools.count()

step = st.one_of(
    st.tuples(
        st.just("sale"),
        st.integers(1, 4000),
        st.integers(0, 3000),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("return"), st.integers(0, 50), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("redeem"), st.integers(0, 5)),
    st.tuples(st.just("use"), st.integers(0, 50)),
    st.tuples(st.just("void"), st.integers(0, 50)),
    st.tuples(st.just("adjust"), st.integers(-2000, 2000).filter(bool)),
    st.tuples(st.just("expire"), st.integers(1, 90)),
)


async def _balanced(sessions, member_ids) -> dict[int, int]:
    balances = {}
    async with transaction(sessions) as s:
        for member_id in member_ids:
            points, ledger, lots = await balance_check(s, member_id=member_id)
            assert points == ledger == lots, (member_id, points, ledger, lots)
            balances[member_id] = points
    return balances


async def _scenario(url: str, steps: list[tuple]) -> None:
    run = next(RUN)
    phone, friend = f"+86138{run:08d}", f"+86139{run:08d}"
    engine = make_engine(url)
    sessions = session_factory(engine)
    now = START
    try:
        async with transaction(sessions) as s:
            if (await s.exec(select(Store).where(Store.code == "S1"))).first() is None:
                s.add(Store(code="S1", name="店"))
            for p in (phone, friend):
                s.add(Member(phone=p, join_date=date(2026, 1, 1), tier="points"))
        async with transaction(sessions) as s:
            ids = [(await s.exec(select(Member.id).where(Member.phone == p))).one()
                   for p in (phone, friend)]  # fmt: skip
        member_id = ids[0]
        for n, (kind, *args) in enumerate(steps):
            now += timedelta(hours=7)
            before = await _balanced(sessions, ids)
            try:
                async with transaction(sessions) as s:
                    await _apply(s, kind, args, run, n, member_id, phone, friend, now)
            except DomainError:
                assert await _balanced(sessions, ids) == before, (kind, args)  # nothing changed
            await _balanced(sessions, ids)
    finally:
        await engine.dispose()


async def _apply(s, kind, args, run, n, member_id, phone, friend, now) -> None:
    if kind == "sale":
        shirts, suits, referred, with_voucher = args
        items = [{"sku": "K1", "name": "衬衫", "category": "shirts", "qty": 2,
                  "amount": Decimal(shirts)}]  # fmt: skip
        if suits:
            items.append(
                {"sku": "K2", "name": "西装", "category": "suits", "qty": 1, "amount": suits}
            )
        codes = []
        if with_voucher:
            stmt = select(Voucher.code).where(
                Voucher.member_id == member_id, Voucher.status == "issued"
            )
            codes = list((await s.exec(stmt)).all())[:1]
        data = PurchaseIn(
            receipt_no=f"P{run}-{n}",
            phone=phone,
            store="S1",
            amount=Decimal(shirts + suits),
            at=now,
            items=items,
            referrer=friend if referred else None,
            vouchers=codes,
        )
        await record_purchase(s, rules=RULES, tz=TZ, data=data)
    elif kind == "return":
        pick, qty, suit = args
        stmt = select(Purchase).where(Purchase.member_id == member_id).order_by(Purchase.id)
        sales = list((await s.exec(stmt)).all())
        if not sales:
            return
        sale = sales[pick % len(sales)]
        lines = (
            await s.exec(select(PurchaseItem).where(PurchaseItem.purchase_id == sale.id))
        ).all()
        line = next((x for x in lines if x.sku == ("K2" if suit else "K1")), lines[0])
        amount = (line.amount / line.qty * min(qty, line.qty)).quantize(Decimal("0.01"))
        data = ReturnIn(
            return_no=f"T{run}-{n}",
            receipt_no=sale.receipt_no,
            at=now,
            items=[{"sku": line.sku, "qty": qty, "amount": amount}],
        )
        await record_return(s, rules=RULES, tz=TZ, data=data)
    elif kind == "redeem":
        key = f"r{run}-{n}" if args[0] else f"r{run}-0"  # sometimes a repeated key
        await redeem(s, rules=RULES, tz=TZ, member_id=member_id, reward_code="v300", key=key,
                     now=now)  # fmt: skip
    elif kind in ("use", "void"):
        stmt = select(Voucher.code).where(Voucher.member_id == member_id).order_by(Voucher.id)
        codes = list((await s.exec(stmt)).all())
        if not codes:
            return
        code = codes[args[0] % len(codes)]
        if kind == "use":
            await use_voucher(s, tz=TZ, code=code, store_code="S1", receipt_no=None, actor="t",
                              now=now)  # fmt: skip
        else:
            await void_voucher(s, rules=RULES, tz=TZ, code=code, reason="r", actor="t", now=now)
    elif kind == "adjust":
        await adjust_points(s, rules=RULES, tz=TZ, member_id=member_id, delta=args[0],
                            key=f"a{run}-{n}", at=now, reason="fix", actor="t")  # fmt: skip
    elif kind == "expire":
        day = (now + timedelta(days=args[0])).astimezone(TZ).date()
        await expire_due(s, rules=RULES.points, today=day, now=now)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_ledger_balance_and_lots_agree_after_every_step(db_url, steps):
    asyncio.run(_scenario(db_url, steps))
