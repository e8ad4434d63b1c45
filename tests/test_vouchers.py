"""Redemption: never below zero, never twice for one request, safe under concurrency."""

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import func, select

from models.errors import Conflict, InsufficientPoints, InvalidInput
from models.points import post_points
from models.points_reads import balance_check
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.purchases.visits import record_visit
from models.rules import ExpiryRules, LoyaltyRules, PointsRules, Reward, RewardRules
from models.tables.ledger import PointsEntry, Voucher
from models.voucher_till import expire_vouchers
from models.vouchers import CODE_ALPHABET, member_vouchers, redeem
from tests.factories import make_assistant, make_member, make_store

TZ = ZoneInfo("Asia/Shanghai")
RULES = LoyaltyRules()
NOW = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)  # 12:00 brand time


async def _member_with(sessions, points: int, phone: str = "+8613800138000") -> int:
    async with sessions() as s, s.begin():
        m = await make_member(s, phone=phone)
        if points:
            await post_points(
                s,
                rules=RULES.points,
                member_id=m.id,
                delta=points,
                reason="adjustment",
                key=f"seed:{phone}",
                at=NOW,
                local_date=date(2026, 5, 1),
            )
        return m.id


async def _redeem(s, member_id, key, reward="v300", now=NOW, rules=RULES):
    return await redeem(
        s, rules=rules, tz=TZ, member_id=member_id, reward_code=reward, key=key, now=now
    )


async def test_redeem_issues_a_voucher_and_deducts_the_cost(sessions):
    member_id = await _member_with(sessions, 3500)
    async with sessions() as s, s.begin():
        voucher, new = await _redeem(s, member_id, "k1")
        assert new is True
        assert voucher.value == Decimal("300.00") and voucher.status == "issued"
        assert voucher.expires_on == date(2026, 7, 30)  # brand today + 90 days
        assert len(voucher.code) == 12 and set(voucher.code) <= set(CODE_ALPHABET)
        entry = (await s.exec(select(PointsEntry).where(PointsEntry.id == voucher.entry_id))).one()
        assert (entry.delta, entry.reason, entry.key, entry.balance_after) == (
            -3000,
            "redemption",
            "redeem:k1",
            500,
        )
        assert await balance_check(s, member_id=member_id) == (500, 500, 500)


async def test_same_key_redeems_once(sessions):
    member_id = await _member_with(sessions, 7000)
    async with sessions() as s, s.begin():
        first, _ = await _redeem(s, member_id, "k1")
    async with sessions() as s, s.begin():
        again, new = await _redeem(s, member_id, "k1")
        assert new is False and again.id == first.id and again.code == first.code
        assert await balance_check(s, member_id=member_id) == (4000, 4000, 4000)
    other = await _member_with(sessions, 0, phone="+8613900139000")
    async with sessions() as s, s.begin():
        with pytest.raises(Conflict):
            await _redeem(s, other, "k1")


async def test_insufficient_balance_changes_nothing(sessions):
    member_id = await _member_with(sessions, 2999)
    with pytest.raises(InsufficientPoints) as err:
        async with sessions() as s, s.begin():
            await _redeem(s, member_id, "k1")
    assert (err.value.balance, err.value.cost) == (2999, 3000)
    async with sessions() as s:
        assert (await s.exec(select(func.count()).select_from(Voucher))).one() == 0
        assert await balance_check(s, member_id=member_id) == (2999, 2999, 2999)


async def test_unknown_reward(sessions):
    member_id = await _member_with(sessions, 5000)
    async with sessions() as s, s.begin():
        with pytest.raises(InvalidInput) as err:
            await _redeem(s, member_id, "k1", reward="nope")
        assert err.value.field == "reward"


async def test_member_vouchers_and_expiry(sessions):
    rules = LoyaltyRules(
        rewards=RewardRules(
            catalogue=[
                Reward(
                    code="small", name="10元券", cost=10, voucher_value=Decimal("10"), valid_days=10
                ),
                Reward(
                    code="big", name="50元券", cost=20, voucher_value=Decimal("50"), valid_days=30
                ),
            ]
        )
    )
    member_id = await _member_with(sessions, 100)
    async with sessions() as s, s.begin():
        small, _ = await _redeem(s, member_id, "a", reward="small", rules=rules)
        big, _ = await _redeem(s, member_id, "b", reward="big", rules=rules)
        assert small.expires_on == date(2026, 5, 11) and big.expires_on == date(2026, 5, 31)
        listed = await member_vouchers(s, member_id=member_id, today=date(2026, 5, 12))
        assert [v.code for v in listed] == [small.code, big.code]
        active = await member_vouchers(
            s, member_id=member_id, today=date(2026, 5, 12), active_only=True
        )
        assert [v.code for v in active] == [big.code]
        assert await expire_vouchers(s, today=date(2026, 5, 11), now=NOW) == 0
        assert await expire_vouchers(s, today=date(2026, 5, 12), now=NOW) == 1
        assert await expire_vouchers(s, today=date(2026, 5, 12), now=NOW) == 0
        statuses = (await s.exec(select(Voucher.code, Voucher.status).order_by(Voucher.id))).all()
        assert statuses == [(small.code, "expired"), (big.code, "issued")]


async def test_fifty_concurrent_redemptions_against_a_balance_for_two(sessions):
    member_id = await _member_with(sessions, 6500)

    async def attempt(i: int):
        async with sessions() as s, s.begin():
            voucher, _ = await _redeem(s, member_id, f"key-{i}")
            return voucher.code

    results = await asyncio.gather(*(attempt(i) for i in range(50)), return_exceptions=True)
    issued = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert len(issued) == 2 and len(refused) == 48, [r for r in results if not isinstance(r, str)]
    async with sessions() as s:
        assert (await s.exec(select(func.count()).select_from(Voucher))).one() == 2
        assert await balance_check(s, member_id=member_id) == (500, 500, 500)
        redemptions = (
            await s.exec(
                select(PointsEntry.balance_after)
                .where(PointsEntry.reason == "redemption")
                .order_by(PointsEntry.id)
            )
        ).all()
        assert redemptions == [3500, 500]


async def test_ten_concurrent_identical_redemptions_issue_one_voucher(sessions):
    member_id = await _member_with(sessions, 60000)  # enough for all ten, were they distinct

    async def attempt():
        async with sessions() as s, s.begin():
            return await _redeem(s, member_id, "same-key")

    results = await asyncio.gather(*(attempt() for _ in range(10)))
    assert len({v.code for v, _ in results}) == 1
    assert sorted(new for _, new in results) == [False] * 9 + [True]
    async with sessions() as s:
        assert (await s.exec(select(func.count()).select_from(Voucher))).one() == 1
        assert await balance_check(s, member_id=member_id) == (57000, 57000, 57000)


async def test_ten_concurrent_identical_redemptions_on_a_balance_for_one(sessions):
    member_id = await _member_with(sessions, 3000)

    async def attempt():
        async with sessions() as s, s.begin():
            return await _redeem(s, member_id, "same-key")

    results = await asyncio.gather(*(attempt() for _ in range(10)))
    assert len({v.code for v, _ in results}) == 1  # twins get the voucher, not an error
    async with sessions() as s:
        assert await balance_check(s, member_id=member_id) == (0, 0, 0)


async def test_no_drift_after_a_mix_of_everything(sessions):
    rules = LoyaltyRules(
        points=PointsRules(expiry=ExpiryRules(policy="calendar_year"), double_points_days=["06-18"])
    )
    async with sessions() as s, s.begin():
        store = await make_store(s)
        await make_assistant(s, store=store)
        gold = await make_member(s, phone="+8613900139000", tier="gold", birthday="06-01")

    def buy(receipt, phone, amount, at, referrer=None):
        return PurchaseIn(
            receipt_no=receipt,
            phone=phone,
            store="S001",
            assistant="A001",
            amount=amount,
            at=at,
            referrer=referrer,
        )

    steps = [
        buy("R1", gold.phone, "1200", "2026-06-01T10:00:00"),  # birthday ×2
        buy("R2", "13800138000", "999.99", "2026-06-18T10:00:00", referrer=gold.phone),
        buy("R3", gold.phone, "2500", "2026-12-30T10:00:00"),
        buy("R4", "13800138000", "10", "2027-01-03T10:00:00"),
    ]
    async with sessions() as s, s.begin():
        for data in steps[:3]:
            await record_purchase(s, rules=rules, tz=TZ, data=data)
        await record_visit(
            s,
            rules=rules,
            tz=TZ,
            member_id=gold.id,
            assistant_id=None,
            at=datetime(2026, 7, 1, 4, tzinfo=UTC),
        )
        await redeem(
            s,
            rules=rules,
            tz=TZ,
            member_id=gold.id,
            reward_code="v300",
            key="mix",
            now=datetime(2026, 12, 31, 4, tzinfo=UTC),
        )
        # 2027: last year's points are past their day; the purchase spends nothing.
        await record_purchase(s, rules=rules, tz=TZ, data=steps[3])
        await redeem(
            s,
            rules=rules,
            tz=TZ,
            member_id=gold.id,
            reward_code="v300",
            key="mix",
            now=datetime(2027, 1, 3, 4, tzinfo=UTC),
        )  # same key: no-op
    async with sessions() as s:
        member_ids = (await s.exec(select(PointsEntry.member_id).distinct())).all()
        assert len(member_ids) == 2
        for member_id in member_ids:
            points, ledger, lots = await balance_check(s, member_id=member_id)
            assert points == ledger == lots
        # gold: 2400 + 299 (referral) + 2500 + 10 (visit) - 3000 = 2209
        assert await balance_check(s, member_id=gold.id) == (2209, 2209, 2209)
