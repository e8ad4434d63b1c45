"""Purchases and the points they earn, visits and staff corrections (models/purchases/)."""

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlmodel import func, select

from models.errors import Conflict, InvalidInput
from models.points_reads import balance_check
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.purchases.visits import adjust_points, record_visit
from models.rules import LoyaltyRules, PointsRules
from models.tables.ledger import PointsEntry
from models.tables.members import Member
from models.tables.purchases import Purchase, PurchaseItem
from tests.factories import make_assistant, make_member, make_store

TZ = ZoneInfo("Asia/Shanghai")
RULES = LoyaltyRules()


def buy(
    receipt: str = "R1",
    *,
    phone: str | None = "13800138000",
    amount="100",
    at="2026-05-01T12:00:00",
    store="S001",
    assistant: str | None = "A001",
    items=None,
    referrer=None,
    card_no=None,
) -> PurchaseIn:
    data = {"receipt_no": receipt, "store": store, "amount": amount, "at": at}
    for key, value in {
        "phone": phone,
        "assistant": assistant,
        "items": items,
        "referrer": referrer,
        "card_no": card_no,
    }.items():
        if value is not None:
            data[key] = value
    return PurchaseIn.model_validate(data)


def rules_with(**points) -> LoyaltyRules:
    return LoyaltyRules(points=PointsRules(**points))


async def _shop(s):
    store = await make_store(s)
    assistant = await make_assistant(s, store=store)
    return store, assistant


async def _entries(s, member_id):
    stmt = select(PointsEntry).where(PointsEntry.member_id == member_id).order_by(PointsEntry.id)
    return list((await s.exec(stmt)).all())


async def _record(s, data, rules=RULES):
    return await record_purchase(s, rules=rules, tz=TZ, data=data)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "change, loc",
    [
        ({"phone": None}, ("phone",)),
        ({"phone": "12345"}, ("phone",)),
        ({"amount": True}, ("amount",)),
        ({"amount": "NaN"}, ("amount",)),
        ({"amount": "Infinity"}, ("amount",)),
        ({"amount": float("inf")}, ("amount",)),
        ({"amount": "0"}, ("amount",)),
        ({"amount": "-5"}, ("amount",)),
        ({"amount": "10.005"}, ("amount",)),
        ({"amount": "ten"}, ("amount",)),
        ({"at": 1777777777}, ("at",)),
        ({"at": "yesterday"}, ("at",)),
        ({"receipt_no": ""}, ("receipt_no",)),
        ({"receipt_no": "R" * 65}, ("receipt_no",)),
        ({"store": ""}, ("store",)),
        ({"referrer": "abc"}, ("referrer",)),
        ({"bonus": 1}, ("bonus",)),
        (
            {"items": [{"sku": "1", "name": "T", "category": "c", "qty": 0, "amount": "1"}]},
            ("items", 0, "qty"),
        ),
        (
            {"items": [{"sku": "1", "name": "T", "category": "c", "qty": True, "amount": "1"}]},
            ("items", 0, "qty"),
        ),
        (
            {"items": [{"sku": "1", "name": "T", "category": "c", "amount": "-1"}]},
            ("items", 0, "amount"),
        ),
        (
            {"items": [{"sku": "1", "name": "T", "category": "c", "amount": "1", "x": 1}]},
            ("items", 0, "x"),
        ),
    ],
)
def test_purchase_input_is_validated(change, loc):
    data = {
        "receipt_no": "R1",
        "phone": "13800138000",
        "store": "S001",
        "amount": "10",
        "at": "2026-05-01T12:00:00",
    }
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ValidationError) as err:
        PurchaseIn.model_validate(data)
    assert [e["loc"] for e in err.value.errors()] == [loc]


def test_purchase_input_accepts_decimal_strings_numbers_and_card_numbers():
    assert buy(amount="12.5").amount == Decimal("12.50")
    assert buy(amount=12.5).amount == Decimal("12.50")
    assert buy(amount=12).amount == Decimal("12.00")
    p = buy(phone=None, card_no="C-1", at="2026-05-01T12:00:00+08:00")
    assert p.phone is None and p.card_no == "C-1" and p.at.tzinfo is not None
    assert buy(phone="+86 138-0013-8000", referrer="13900139000").referrer == "+8613900139000"
    assert buy(phone="138 0013 8000").phone == "+8613800138000"
    csv_item = {"sku": "1", "name": "T", "category": "c", "qty": "2", "amount": "9.9"}
    assert buy(items=[csv_item]).items[0].qty == 2
    assert buy(at="2026-05-01T04:00:00Z").at == datetime(2026, 5, 1, 4, tzinfo=UTC)


# ------------------------------------------------------------------ recording


async def test_new_phone_is_enrolled_and_earns_one_point_per_yuan(sessions):
    async with sessions() as s, s.begin():
        store, assistant = await _shop(s)
        # 23:30 brand time on 1 May, given without an offset = brand-local.
        p, new = await _record(
            s,
            buy(
                amount="123.45",
                at="2026-05-01T23:30:00",
                items=[
                    {"sku": "T1", "name": "衬衫", "category": "shirt", "qty": 2, "amount": "123.45"}
                ],
            ),
        )
        assert new is True
        assert p.local_date == date(2026, 5, 1)
        assert p.at == datetime(2026, 5, 1, 15, 30, tzinfo=UTC)
        assert p.points == 123 and p.assistant_id == assistant.id
        member = (await s.exec(select(Member).where(Member.id == p.member_id))).one()
        assert member.phone == "+8613800138000"
        assert member.join_date == date(2026, 5, 1)
        assert member.tier == RULES.tiers.entry.code and member.store_id == store.id
        assert member.points == 123 and member.purchases_count == 1
        assert member.cumulative_spend == Decimal("123.45")
        assert member.first_purchase_at == member.last_purchase_at == p.at
        [entry] = await _entries(s, member.id)
        assert (entry.reason, entry.delta, entry.key, entry.purchase_id) == (
            "purchase",
            123,
            f"purchase:{p.id}",
            p.id,
        )
        items = (await s.exec(select(PurchaseItem))).all()
        assert [(i.sku, i.qty, i.amount, i.purchase_id) for i in items] == [
            ("T1", 2, Decimal("123.45"), p.id)
        ]


async def test_brand_day_of_a_utc_time(sessions):
    async with sessions() as s, s.begin():
        await _shop(s)
        p, _ = await _record(s, buy(at="2026-05-01T16:30:00+00:00"))
        assert p.local_date == date(2026, 5, 2)


async def test_totals_follow_out_of_order_sales(sessions):
    async with sessions() as s, s.begin():
        await _shop(s)
        await _record(s, buy("R1", amount="10", at="2026-05-10T12:00:00"))
        await _record(s, buy("R2", amount="20.50", at="2026-05-01T12:00:00"))
        await _record(s, buy("R3", amount="5", at="2026-05-20T12:00:00"))
        m = (await s.exec(select(Member))).one()
        assert m.purchases_count == 3 and m.cumulative_spend == Decimal("35.50")
        assert m.first_purchase_at == datetime(2026, 5, 1, 4, tzinfo=UTC)
        assert m.last_purchase_at == datetime(2026, 5, 20, 4, tzinfo=UTC)
        assert m.points == 35


async def test_rate(sessions):
    async with sessions() as s, s.begin():
        await _shop(s)
        p, _ = await _record(s, buy(amount="123.45"), rules_with(rate=Decimal("2")))
        assert p.points == 246
        p, _ = await _record(s, buy("R2", amount="99.99"), rules_with(rate=Decimal("0.5")))
        assert p.points == 49


async def test_brand_and_category_multipliers_weighted_and_capped(sessions):
    rules = rules_with(
        multipliers={"Lux": Decimal("3"), "shoes": Decimal("2"), "sale": Decimal("0")},
        max_multiplier=Decimal("2.5"),
    )
    items = [
        {"sku": "1", "name": "Bag", "category": "bags", "brand": "Lux", "amount": "100"},  # 2.5
        {"sku": "2", "name": "Boot", "category": "shoes", "amount": "100"},  # 2
        {"sku": "3", "name": "Tee", "category": "shirts", "amount": "200"},  # 1
    ]
    async with sessions() as s, s.begin():
        await _shop(s)
        p, _ = await _record(s, buy("R1", amount="400", items=items), rules)
        assert p.points == 650  # 400 × (250 + 200 + 200) / 400
        # The brand wins over the category; a 0 multiplier earns nothing.
        brand_first = [
            {"sku": "1", "name": "Shoe", "category": "shoes", "brand": "Lux", "amount": "50"}
        ]
        p, _ = await _record(s, buy("R2", amount="50", items=brand_first), rules)
        assert p.points == 125
        p, _ = await _record(
            s,
            buy(
                "R3",
                amount="50",
                items=[{"sku": "9", "name": "Old", "category": "sale", "amount": "50"}],
            ),
            rules,
        )
        assert p.points == 0
        # Exact arithmetic: 3 × (1×2 + 2×1) / 3 = 4, not 3.999….
        mixed = [
            {"sku": "1", "name": "a", "category": "shoes", "amount": "1"},
            {"sku": "2", "name": "b", "category": "x", "amount": "2"},
        ]
        p, _ = await _record(s, buy("R4", amount="3", items=mixed), rules)
        assert p.points == 4
        m = (await s.exec(select(Member))).one()
        assert await balance_check(s, member_id=m.id) == (779, 779, 779)


async def test_double_points_days_once_and_yearly(sessions):
    rules = rules_with(double_points_days=["2026-06-18", "11-11"])
    async with sessions() as s, s.begin():
        await _shop(s)
        cases = [
            ("R1", "2026-06-18T10:00:00", 200),
            ("R2", "2027-06-18T10:00:00", 100),
            ("R3", "2026-11-11T10:00:00", 200),
            ("R4", "2027-11-11T10:00:00", 200),
            ("R5", "2026-11-12T10:00:00", 100),
        ]
        for receipt, at, points in cases:
            p, _ = await _record(s, buy(receipt, at=at), rules)
            assert p.points == points, receipt
            [entry] = (
                await s.exec(select(PointsEntry).where(PointsEntry.purchase_id == p.id))
            ).all()
            assert entry.reason == "purchase" and entry.delta == points
            assert ("double_points_day" in entry.note) == (points == 200)


async def test_birthday_multiplier_per_tier_solar_and_lunar(sessions):
    async with sessions() as s, s.begin():
        await _shop(s)
        gold = await make_member(s, phone="+8613800000001", tier="gold", birthday="1990-05-01")
        plain = await make_member(s, phone="+8613800000002", tier="points", birthday="05-01")
        lunar = await make_member(
            s, phone="+8613800000003", tier="gold", birthday="08-15", birthday_calendar="lunar"
        )
        diamond = await make_member(s, phone="+8613800000004", tier="diamond", birthday="05-02")

        p, _ = await _record(s, buy("G1", phone=gold.phone, amount="150.50"))
        assert p.points == 301
        assert [(e.reason, e.delta, e.key) for e in await _entries(s, gold.id)] == [
            ("purchase", 150, f"purchase:{p.id}"),
            ("birthday_bonus", 151, f"birthday:{p.id}"),
        ]
        p, _ = await _record(s, buy("G2", phone=gold.phone, at="2026-05-02T12:00:00"))
        assert p.points == 100  # not the birthday

        p, _ = await _record(s, buy("P1", phone=plain.phone))
        assert p.points == 100  # points card: ×1 by default
        assert [e.reason for e in await _entries(s, plain.id)] == ["purchase"]

        p, _ = await _record(s, buy("L1", phone=lunar.phone, at="2026-09-25T12:00:00"))
        assert p.points == 200  # lunar 8-15 = 2026-09-25
        p, _ = await _record(s, buy("L2", phone=lunar.phone, at="2026-08-15T12:00:00"))
        assert p.points == 100

        p, _ = await _record(s, buy("D1", phone=diamond.phone, at="2026-05-02T12:00:00"))
        assert p.points == 200


async def test_birthday_and_double_points_day_take_the_larger_multiplier(sessions):
    rules = LoyaltyRules(
        points=PointsRules(
            double_points_days=["05-01"],
            double_points_multiplier=Decimal("3"),
            birthday_multiplier={"gold": Decimal("2")},
        )
    )
    async with sessions() as s, s.begin():
        await _shop(s)
        gold = await make_member(s, tier="gold", birthday="05-01")
        p, _ = await _record(s, buy("R1", phone=gold.phone), rules)
        assert p.points == 300
        assert [e.reason for e in await _entries(s, gold.id)] == ["purchase"]


async def test_referral_on_the_first_purchase_only_and_never_to_oneself(sessions):
    async with sessions() as s, s.begin():
        await _shop(s)
        referrer = await make_member(s, phone="+8613900139000")
        p, _ = await _record(s, buy("R1", amount="333.33", referrer="13900139000"))
        assert p.referrer_id == referrer.id
        new = (await s.exec(select(Member).where(Member.phone == "+8613800138000"))).one()
        assert new.referrer_id == referrer.id
        assert [
            (e.reason, e.delta, e.key, e.purchase_id) for e in await _entries(s, referrer.id)
        ] == [("referral", 99, f"referral:{p.id}", p.id)]
        # Second purchase: no referral points.
        p2, _ = await _record(s, buy("R2", amount="1000", referrer="13900139000"))
        assert p2.referrer_id is None
        assert len(await _entries(s, referrer.id)) == 1
        # A member naming themself gets nothing; nor does an unknown referrer.
        await _record(s, buy("R3", phone="13700137000", referrer="13700137000"))
        await _record(s, buy("R4", phone="13600136000", referrer="13500135000"))
        assert (
            await s.exec(
                select(func.count())
                .select_from(PointsEntry)
                .where(PointsEntry.reason == "referral")
            )
        ).one() == 1
        self_ref = (await s.exec(select(Member).where(Member.phone == "+8613700137000"))).one()
        assert self_ref.referrer_id is None
        assert await balance_check(s, member_id=referrer.id) == (99, 99, 99)


async def test_same_receipt_twice_records_once(sessions):
    async with sessions() as s, s.begin():
        await _shop(s)
        first, new = await _record(s, buy("R1", amount="100"))
        again, new_again = await _record(s, buy("R1", amount="100"))
        other_phone, _ = await _record(s, buy("R1", phone="13900139000", amount="100"))
        with pytest.raises(Conflict) as err:
            await _record(s, buy("R1", amount="500"))
        assert err.value.field == "amount" and "amount 100.00 (not 500.00)" in err.value.message
        assert (new, new_again) == (True, False)
        assert again.id == first.id == other_phone.id
        assert (await s.exec(select(func.count()).select_from(Member))).one() == 1
        m = (await s.exec(select(Member))).one()
        assert (m.points, m.purchases_count, m.cumulative_spend) == (100, 1, Decimal("100.00"))
        assert len(await _entries(s, m.id)) == 1


async def test_store_assistant_and_card_resolution(sessions):
    async with sessions() as s, s.begin():
        store, _ = await _shop(s)
        other = await make_store(s, code="S002", name="淮海路店")
        floater = await make_assistant(s, store=other, code="A900")
        m = await make_member(s, phone="+8613900139000")
        m.card_no = "VIP-0001"
        s.add(m)
        await s.flush()
        with pytest.raises(InvalidInput) as err:
            await _record(s, buy(store="NOPE"))
        assert err.value.field == "store"
        with pytest.raises(InvalidInput) as err:
            await _record(s, buy(assistant="NOPE"))
        assert err.value.field == "assistant"
        with pytest.raises(InvalidInput) as err:
            await _record(s, buy(phone=None, card_no="VIP-9999"))
        assert err.value.field == "card_no"
        p, _ = await _record(s, buy("R1", phone=None, card_no="VIP-0001", assistant="A900"))
        assert p.member_id == m.id and p.assistant_id == floater.id and p.store_id == store.id
        p, _ = await _record(s, buy("R2", assistant=None))
        assert p.assistant_id is None


async def test_concurrent_identical_receipts_record_one_purchase(sessions):
    async with sessions() as s, s.begin():
        await _shop(s)

    async def attempt():
        async with sessions() as s, s.begin():
            p, new = await _record(s, buy("R-RACE", amount="88"))
            return p.id, new

    results = await asyncio.gather(*(attempt() for _ in range(10)))
    assert len({pid for pid, _ in results}) == 1
    assert sorted(new for _, new in results) == [False] * 9 + [True]
    async with sessions() as s:
        assert (await s.exec(select(func.count()).select_from(Purchase))).one() == 1
        m = (await s.exec(select(Member))).one()
        assert (m.points, m.purchases_count) == (88, 1)
        assert len(await _entries(s, m.id)) == 1
        assert await balance_check(s, member_id=m.id) == (88, 88, 88)


# ------------------------------------------------------------------ visits and corrections


async def test_visit_points_once_per_brand_day(sessions):
    async with sessions() as s, s.begin():
        store, assistant = await _shop(s)
        m = await make_member(s)
        late = datetime(2026, 5, 1, 15, 59, tzinfo=UTC)  # 23:59 brand time
        first = await record_visit(
            s, rules=RULES, tz=TZ, member_id=m.id, assistant_id=assistant.id, at=late
        )
        assert (first.delta, first.reason, first.key) == (10, "visit", f"visit:{m.id}:2026-05-01")
        again = await record_visit(
            s,
            rules=RULES,
            tz=TZ,
            member_id=m.id,
            assistant_id=assistant.id,
            at=datetime(2026, 5, 1, 2, 0, tzinfo=UTC),
        )
        assert again is None
        assert m.visits == 1 and m.points == 10
        next_day = await record_visit(
            s,
            rules=RULES,
            tz=TZ,
            member_id=m.id,
            assistant_id=None,
            at=datetime(2026, 5, 1, 16, 1, tzinfo=UTC),
        )
        assert next_day.local_date == date(2026, 5, 2)
        assert m.visits == 2 and m.points == 20
        assert await balance_check(s, member_id=m.id) == (20, 20, 20)


async def test_adjustments(sessions):
    at = datetime(2026, 5, 1, 4, tzinfo=UTC)
    common = dict(rules=RULES, tz=TZ, at=at, actor="M01")
    async with sessions() as s, s.begin():
        m = await make_member(s)
        e, made = await adjust_points(
            s, member_id=m.id, delta=50, key="fix-1", reason="lost receipt", **common
        )
        assert made and (e.reason, e.delta, e.key, e.note) == (
            "adjustment",
            50,
            "adjust:fix-1",
            "M01: lost receipt",
        )
        again, made = await adjust_points(
            s, member_id=m.id, delta=50, key="fix-1", reason="again", **common
        )
        assert not made and again.id == e.id
        with pytest.raises(Conflict):
            await adjust_points(s, member_id=m.id, delta=40, key="fix-1", reason="x", **common)
        await adjust_points(s, member_id=m.id, delta=-20, key="fix-2", reason="typo", **common)
        with pytest.raises(InvalidInput):
            await adjust_points(s, member_id=m.id, delta=0, key="fix-4", reason="x", **common)
        with pytest.raises(InvalidInput):
            await adjust_points(s, member_id=m.id, delta=5, key="fix-5", reason=" ", **common)
        assert await balance_check(s, member_id=m.id) == (30, 30, 30)
        # A correction of points wrongly given and already spent leaves a debt.
        await adjust_points(s, member_id=m.id, delta=-31, key="fix-3", reason="double", **common)
        assert await balance_check(s, member_id=m.id) == (-1, -1, -1)
