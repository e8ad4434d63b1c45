"""Returns and corrections (CONTRACT.md `POST /api/returns`, `POST /api/points/adjustments`;
docs/loyalty-rules.md "Returns"): points taken back with the multipliers they earned
under, spend and the referral share fall, the tier is judged again, a balance may go
below zero and then nothing is redeemed; explicit dates, both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlmodel import select

from bot.app import create_app
from bot.appkeys import LOYALTY, SESSIONS, SETTINGS
from bot.handlers.points import answer
from models.db import transaction
from models.errors import InsufficientPoints
from models.points_reads import balance_check
from models.rules import LoyaltyRules
from models.tables.ledger import PointsEntry, TierChange
from models.tables.members import Member
from models.tiers.facts import read_points
from models.vouchers import redeem
from tests.test_api import call, member, seed

AT = "2026-03-10T14:00:00+08:00"
LATER = "2026-03-12T10:00:00+08:00"
PHONE = "+8613800138000"


@pytest.fixture
async def client(aiohttp_client, make_settings):
    settings = make_settings(points={"multipliers": {"suits": "2"}})
    return await aiohttp_client(create_app(settings))


def sale(receipt="R1", phone="13800138000", **extra) -> dict:
    body = {
        "receipt_no": receipt,
        "phone": phone,
        "store": "S001",
        "amount": "1500.00",
        "at": AT,
        "items": [
            {"sku": "K1", "name": "衬衫", "category": "shirts", "qty": 2, "amount": "1000.00"},
            {"sku": "K2", "name": "西装", "category": "suits", "qty": 1, "amount": "500.00"},
        ],
    }
    body.update(extra)
    return body


def ret(no: str, *items, receipt="R1", at=LATER) -> dict:
    return {
        "return_no": no,
        "receipt_no": receipt,
        "at": at,
        "items": [{"sku": s, "qty": q, "amount": a} for s, q, a in items],
    }


def _sessions(client):
    return client.app[SESSIONS]


async def _check(client, phone=PHONE):
    async with transaction(_sessions(client)) as s:
        m = (await s.exec(select(Member).where(Member.phone == phone))).one()
        points, ledger, lots = await balance_check(s, member_id=m.id)
    assert points == ledger == lots, (points, ledger, lots)
    return points


async def test_points_come_back_with_the_multipliers_they_earned_under(client):
    await seed(client)
    status, body = await call(client, "POST", "/api/purchases", sale())
    assert status == 201 and body["points"] == 2000  # 1000 × 1 + 500 × 2
    # the suit earned double: its 500 yuan took 1000 of the 2000 points
    status, body = await call(client, "POST", "/api/returns", ret("T1", ("K2", 1, "500.00")))
    assert status == 201, body
    assert (body["points"], body["balance"], body["cumulative_spend"]) == (-1000, 1000, "1000.00")
    status, again = await call(client, "POST", "/api/returns", ret("T1", ("K2", 1, "500.00")))
    assert status == 200 and again["balance"] == 1000  # idempotent on return_no
    status, body = await call(client, "POST", "/api/returns", ret("T2", ("K1", 1, "500.00")))
    assert (status, body["points"], body["balance"]) == (201, -500, 500)
    # more than was bought, earlier returns counted → 422, nothing changes
    for too_much in (("K1", 2, "500.00"), ("K1", 1, "600.00"), ("K2", 1, "1.00"), ("K9", 1, "1")):
        status, body = await call(client, "POST", "/api/returns", ret("T3", too_much))
        assert status == 422 and body["field"] == "items", body
    status, body = await call(client, "POST", "/api/returns", ret("T3", ("K1", 1, "500.00")))
    assert (status, body["points"], body["balance"], body["cumulative_spend"]) == (
        201,
        -500,
        0,
        "0.00",
    )
    assert await _check(client) == 0
    async with transaction(_sessions(client)) as s:
        entries = (await s.exec(select(PointsEntry).where(PointsEntry.reason == "return"))).all()
    assert sorted(e.delta for e in entries) == [-1000, -500, -500]
    assert all("receipt R1" in e.note for e in entries)


async def test_unknown_receipt_404_and_return_no_reused_for_another_receipt_409(client):
    await seed(client)
    await call(client, "POST", "/api/purchases", sale())
    await call(client, "POST", "/api/purchases", sale(receipt="R2"))
    status, body = await call(
        client, "POST", "/api/returns", ret("T1", ("K1", 1, "1"), receipt="X")
    )
    assert status == 404 and body["field"] == "receipt_no"
    assert (await call(client, "POST", "/api/returns", ret("T1", ("K1", 1, "10"))))[0] == 201
    status, body = await call(
        client, "POST", "/api/returns", ret("T1", ("K1", 1, "10"), receipt="R2")
    )
    assert status == 409 and body["field"] == "return_no"
    status, body = await call(client, "POST", "/api/returns", {"return_no": "T5"})
    assert status == 422
    early = ret("T6", ("K1", 1, "10"), at="2026-03-01T10:00:00+08:00")
    assert (await call(client, "POST", "/api/returns", early))[0] == 422


async def test_points_already_spent_leave_a_negative_balance_and_nothing_redeems(client):
    await seed(client)
    big = sale(amount="3500.00", items=[])
    await call(client, "POST", "/api/purchases", big)
    sessions = _sessions(client)
    rules, tz = client.app[LOYALTY], client.app[SETTINGS].brand.tz
    now = datetime(2026, 3, 11, 2, tzinfo=UTC)
    async with transaction(sessions) as s:
        m = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
        await redeem(s, rules=rules, tz=tz, member_id=m.id, reward_code="v300", key="r1", now=now)
    status, body = await call(client, "POST", "/api/returns", ret("T1", ("", 1, "3500.00")))
    assert status == 201 and body["balance"] == -3000
    view = await member(client)
    assert view["points"] == -3000 and view["cumulative_spend"] == "0.00"
    assert await _check(client) == -3000
    async with transaction(sessions) as s:
        m = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
        with pytest.raises(InsufficientPoints):
            await redeem(
                s, rules=rules, tz=tz, member_id=m.id, reward_code="v300", key="r2", now=now
            )
    # new sales pay the debt first
    status, body = await call(
        client, "POST", "/api/purchases", sale(receipt="R2", amount="1000.00", items=[])
    )
    assert status == 201, body
    assert await _check(client) == -2000
    await call(client, "POST", "/api/purchases", sale(receipt="R3", amount="2500.00", items=[]))
    assert await _check(client) == 500


async def test_the_referrers_share_is_taken_back_in_proportion(client):
    await seed(client)
    await call(client, "POST", "/api/purchases", sale(receipt="R0", phone="13900139000", items=[]))
    referrer = "+8613900139000"
    before = (await member(client, referrer))["points"]
    status, _ = await call(client, "POST", "/api/purchases", sale(referrer=referrer))
    assert (await member(client, referrer))["points"] == before + 450  # 30 % of 1500
    status, body = await call(client, "POST", "/api/returns", ret("T1", ("K1", 1, "500.00")))
    assert body["referral_points"] == -150
    assert (await member(client, referrer))["points"] == before + 300
    await _check(client, referrer)


async def test_a_return_takes_back_an_upgrade_the_sale_no_longer_carries(client):
    await seed(client)
    status, body = await call(client, "POST", "/api/purchases", sale(amount="3000.00", items=[]))
    assert (await member(client))["tier"] == "gold"
    status, body = await call(client, "POST", "/api/returns", ret("T1", ("", 1, "100.00")))
    assert body["tier"] == "points"
    async with transaction(_sessions(client)) as s:
        change = (await s.exec(select(TierChange).where(TierChange.reason == "returned"))).one()
    assert (change.from_tier, change.to_tier, change.on.isoformat()) == (
        "gold",
        "points",
        "2026-03-12",
    )
    # a later sale that reaches gold again counts the netted sale: 2900 + 100 = 3000
    await call(
        client, "POST", "/api/purchases", sale(receipt="R2", amount="100.00", items=[], at=LATER)
    )
    assert (await member(client))["tier"] == "gold"


async def test_a_return_keeps_a_tier_other_sales_still_carry(client):
    await seed(client)
    await call(client, "POST", "/api/purchases", sale(receipt="R0", amount="500.00", items=[]))
    await call(client, "POST", "/api/purchases", sale(amount="3000.00", items=[]))
    await call(client, "POST", "/api/returns", ret("T1", ("", 1, "400.00")))
    assert (await member(client))["tier"] == "gold"  # 500 + 2600 ≥ 3000


async def test_adjustments_201_then_200_on_the_same_key_and_visible_with_who_and_why(client):
    await seed(client)
    await call(client, "POST", "/api/purchases", sale())
    body = {"phone": "13800138000", "points": -120, "reason": "typed twice", "key": "fix-1"}
    status, made = await call(client, "POST", "/api/points/adjustments", {**body, "by": "M01"})
    assert status == 201 and made["balance"] == 1880 and made["note"] == "api:M01: typed twice"
    status, again = await call(client, "POST", "/api/points/adjustments", body)
    assert status == 200 and again["balance"] == 1880
    status, err = await call(client, "POST", "/api/points/adjustments", {**body, "points": 5})
    assert status == 409 and err["field"] == "key"
    for bad in (
        {**body, "reason": ""},
        {**body, "reason": "  "},
        {k: v for k, v in body.items() if k != "reason"},
    ):
        status, err = await call(client, "POST", "/api/points/adjustments", {**bad, "key": "k2"})
        assert status == 422 and err["field"] == "reason", err
    status, err = await call(
        client, "POST", "/api/points/adjustments", {**body, "points": "5", "key": "k3"}
    )
    assert status == 422
    status, err = await call(
        client, "POST", "/api/points/adjustments", {**body, "phone": "13700000000"}
    )
    assert status == 404
    assert await _check(client) == 1880


@pytest.mark.parametrize("locale, words", [("zh_CN", "负数"), ("en", "below zero")])
def test_the_points_answer_says_plainly_when_the_balance_is_below_zero(locale, words):
    m = Member(phone=PHONE, join_date=date(2026, 1, 1), tier="points", points=-300)

    def said() -> str:
        return answer(
            rules=LoyaltyRules(), brand="B", locale=locale, today=date(2026, 3, 12),
            member=m, progress=None, expiring=None,
        ).text  # fmt: skip

    assert words in said()
    m.points = 300
    assert words not in said()


async def test_the_points_answer_counts_a_sale_net_of_its_returns(client):
    """The tier progress of the points answer nets returns out on the sale's day, as the
    tier measures do: 2,900 of 3,000 counted after a 100-yuan return of a 3,000 sale."""
    await seed(client)
    await call(client, "POST", "/api/purchases", sale(amount="2950.00", items=[]))
    rules = client.app[SETTINGS].loyalty

    async def missing() -> Decimal:
        async with transaction(_sessions(client)) as s:
            m = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
            today = date(2026, 3, 12)
            facts = await read_points(s, tiers=rules.tiers, member_id=m.id, today=today)
        return facts.progress.closest.missing

    before = await missing()
    await call(client, "POST", "/api/returns", ret("T9", ("", 1, "100.00")))
    assert await missing() == before + 100
