"""Vouchers at the till (CONTRACT.md `POST /api/vouchers/{code}/use|void`, `vouchers` on a
purchase): used once, voided with the points back, a sale with a bad voucher leaves no
trace; on both engines, and 20 uses at once across two app instances on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import func, select

from bot.app import create_app
from models.db import transaction
from models.points import post_points
from models.points_reads import balance_check
from models.tables.ledger import PointsEntry, Voucher
from models.tables.members import Member, Store
from models.tables.purchases import Purchase, PurchaseItem
from models.tables.till import VoucherEvent
from models.types import utcnow
from models.voucher_till import expire_vouchers
from models.vouchers import redeem
from tests.conftest import is_pg
from tests.test_api import call, member, purchase, seed
from tests.test_planner import kinds, one, plan

PHONE = "+8613800138000"


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def issue(sessions, settings, *, points=3500, key="k1", now=None) -> str:
    """A voucher of the member PHONE (joined with `points`), redeemed at `now`."""
    now = now or utcnow()
    rules, tz = settings.loyalty, settings.brand.tz
    async with transaction(sessions) as s:
        m = (await s.exec(select(Member).where(Member.phone == PHONE))).first()
        if m is None:
            m = Member(phone=PHONE, join_date=now.date(), tier="points")
            s.add(m)
            await s.flush()
        await post_points(
            s,
            rules=rules.points,
            member_id=m.id,
            delta=points,
            reason="adjustment",
            key=f"seed:{key}",
            at=now,
            local_date=now.astimezone(tz).date(),
        )
        voucher, _ = await redeem(
            s, rules=rules, tz=tz, member_id=m.id, reward_code="v300", key=key, now=now
        )
        return voucher.code


async def test_use_once_then_409_used_and_404_unknown(client, sessions, settings):
    await seed(client)
    code = await issue(sessions, settings)
    status, body = await call(client, "POST", f"/api/vouchers/{code}/use", {"store": "S001"})
    assert status == 200 and body["status"] == "used" and body["value"] == "300.00"
    assert [e["action"] for e in body["events"]] == ["use"] and body["events"][0]["store"] == "S001"
    status, body = await call(client, "POST", f"/api/vouchers/{code}/use", {"store": "S001"})
    assert status == 409 and "used" in body["error"] and body["field"] == "code"
    status, body = await call(client, "POST", "/api/vouchers/NOSUCHCODE99/use", {"store": "S001"})
    assert status == 404
    status, body = await call(client, "POST", f"/api/vouchers/{code}/use", {"store": "NOPE"})
    assert status == 422 and body["field"] == "store"
    # lower case and dashes typed at the till find the same voucher
    typed = f"{code[:4].lower()}-{code[4:]}"
    status, body = await call(client, "GET", f"/api/vouchers/{typed}")
    assert status == 200 and body["code"] == code and body["status"] == "used"
    status, _ = await call(
        client, "POST", f"/api/vouchers/{code}/use", {"store": "S001"}, headers={}
    )
    assert status == 401


async def test_a_till_retry_of_the_same_use_answers_200_and_uses_nothing_more(
    client, sessions, settings
):
    await seed(client)
    code = await issue(sessions, settings)
    use = {"store": "S001", "receipt_no": "R9", "by": "cashier 3"}
    assert (await call(client, "POST", f"/api/vouchers/{code}/use", use))[0] == 200
    status, body = await call(client, "POST", f"/api/vouchers/{code}/use", use)
    assert status == 200 and len(body["events"]) == 1 and body["events"][0]["by"] == "api:cashier 3"
    other = {"store": "S001", "receipt_no": "R10"}
    assert (await call(client, "POST", f"/api/vouchers/{code}/use", other))[0] == 409


async def test_expired_voucher_is_409_expired_before_and_after_the_daily_job(
    client, sessions, settings
):
    await seed(client)
    code = await issue(sessions, settings, now=utcnow() - timedelta(days=120))
    status, body = await call(client, "POST", f"/api/vouchers/{code}/use", {"store": "S001"})
    assert status == 409 and "expired" in body["error"]
    async with transaction(sessions) as s:
        assert await expire_vouchers(s, today=utcnow().date(), now=utcnow()) == 1
    status, body = await call(client, "POST", f"/api/vouchers/{code}/void", {"reason": "x"})
    assert status == 409 and "expired" in body["error"]
    assert [
        e["action"] for e in (await call(client, "GET", f"/api/vouchers/{code}"))[1]["events"]
    ] == ["expire"]


async def test_void_gives_the_points_back_as_a_ledger_entry(client, sessions, settings):
    await seed(client)
    code = await issue(sessions, settings, points=3500)
    assert (await member(client))["points"] == 500
    status, body = await call(client, "POST", f"/api/vouchers/{code}/void", {})
    assert status == 422 and body["field"] == "reason"
    status, body = await call(
        client, "POST", f"/api/vouchers/{code}/void", {"reason": "wrong reward", "by": "M01"}
    )
    assert status == 200 and body["status"] == "void"
    assert body["events"][0]["reason"] == "wrong reward"
    view = await member(client)
    assert view["points"] == 3500
    assert [v["status"] for v in view["vouchers"]] == ["void"]
    async with transaction(sessions) as s:
        back = (await s.exec(select(PointsEntry).where(PointsEntry.reason == "voucher_void"))).one()
        assert back.delta == 3000 and back.key.startswith("void:") and "M01" in back.note
        assert await balance_check(s, member_id=back.member_id) == (3500, 3500, 3500)
    for path in ("void", "use"):
        status, body = await call(
            client, "POST", f"/api/vouchers/{code}/{path}", {"reason": "again", "store": "S001"}
        )
        assert status in (409, 422)
    status, body = await call(client, "POST", f"/api/vouchers/{code}/void", {"reason": "again"})
    assert status == 409 and "void" in body["error"]


async def test_a_used_voucher_cannot_be_voided(client, sessions, settings):
    await seed(client)
    code = await issue(sessions, settings)
    await call(client, "POST", f"/api/vouchers/{code}/use", {"store": "S001"})
    status, body = await call(client, "POST", f"/api/vouchers/{code}/void", {"reason": "x"})
    assert status == 409 and "used" in body["error"]
    assert (await member(client))["points"] == 500


async def test_a_sale_uses_its_vouchers_in_the_same_transaction(client, sessions, settings):
    await seed(client)
    code = await issue(sessions, settings)
    status, body = await call(client, "POST", "/api/purchases", purchase(vouchers=[code]))
    assert status == 201
    status, v = await call(client, "GET", f"/api/vouchers/{code}")
    assert v["status"] == "used" and v["events"][0]["receipt_no"] == "R1"
    # the same sale again (a retry) is 200 and uses nothing more
    status, body = await call(client, "POST", "/api/purchases", purchase(vouchers=[code]))
    assert status == 200


async def _sale_count(sessions) -> tuple[int, int, int]:
    async with transaction(sessions) as s:
        sales = (await s.exec(select(func.count()).select_from(Purchase))).one()
        items = (await s.exec(select(func.count()).select_from(PurchaseItem))).one()
        events = (await s.exec(select(func.count()).select_from(VoucherEvent))).one()
    return sales, items, events


async def test_a_sale_with_a_bad_voucher_leaves_no_trace(client, sessions, settings):
    await seed(client)
    good = await issue(sessions, settings, key="a")
    used = await issue(sessions, settings, key="b")
    await call(client, "POST", f"/api/vouchers/{used}/use", {"store": "S001"})
    before = await member(client)
    counts = await _sale_count(sessions)
    for bad in ([good, used], [good, "UNKNOWNCODE2"]):
        status, body = await call(client, "POST", "/api/purchases", purchase(vouchers=bad))
        assert status in (404, 409), body
        assert await _sale_count(sessions) == counts
        assert await member(client) == before
        assert (await call(client, "GET", f"/api/vouchers/{good}"))[1]["status"] == "issued"
    # someone else's voucher: 409, nothing recorded
    other = purchase(receipt="R7", phone="13900139000", vouchers=[good])
    status, body = await call(client, "POST", "/api/purchases", other)
    assert status == 409 and body["field"] == "vouchers"
    assert await _sale_count(sessions) == counts
    status, _ = await call(client, "GET", "/api/members/%2B8613900139000")
    assert status == 404  # not even enrolled


@pytest.mark.skipif(not is_pg(), reason="two app instances on one PostgreSQL database")
async def test_twenty_simultaneous_uses_across_two_instances_use_it_once(sessions, settings):
    apps = [create_app(settings), create_app(settings)]
    clients = [TestClient(TestServer(app)) for app in apps]
    for c in clients:
        await c.start_server()
    try:
        await seed(clients[0])
        code = await issue(sessions, settings)
        results = await asyncio.gather(
            *(
                call(clients[i % 2], "POST", f"/api/vouchers/{code}/use", {"store": "S001"})
                for i in range(20)
            )
        )
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] + [409] * 19, results
        async with transaction(sessions) as s:
            voucher = (await s.exec(select(Voucher).where(Voucher.code == code))).one()
            uses = (await s.exec(select(func.count()).select_from(VoucherEvent))).one()
        assert voucher.status == "used" and uses == 1
    finally:
        for c in clients:
            await c.close()


async def test_a_voucher_about_to_expire_gets_a_service_notice(sessions, settings):
    """`voucher_expiry` N days before the last day (default 7), once per member and day,
    naming the codes; a used voucher gets none; the text passes the service rules."""
    async with transaction(sessions) as s:
        store = Store(code="S1", name="静安店")
        s.add(store)
        await s.flush()
        m = Member(phone=PHONE, join_date=date(2026, 1, 1), tier="points", store_id=store.id)
        s.add(m)
        await s.flush()
        codes = {}
        for code, status in (("AAAAAAAAAAAA", "issued"), ("BBBBBBBBBBBB", "used")):
            s.add(Voucher(code=code, member_id=m.id, reward_code="v300", value=300,
                          status=status, issued_at=utcnow(), expires_on=date(2026, 5, 8),
                          redemption_key=code))  # fmt: skip
            codes[code] = status
    planned = await plan(sessions, settings, date(2026, 5, 1))
    notice = one(planned, m, "voucher_expiry")
    assert "AAAAAAAAAAAA" in notice.text and "BBBBBBBBBBBB" not in notice.text
    assert "05月08日" in notice.text or "5月8日" in notice.text or "2026-05-08" in notice.text
    assert notice.occasion == "vouchers:2026-05-08"
    assert kinds(await plan(sessions, settings, date(2026, 5, 2)), m) == []


async def test_000_automatic_voucher_when_a_years_points_reach_the_threshold(
    aiohttp_client, make_settings, sessions
):
    """Off by default; on: crossing 3,000 purchase points within 365 days issues the
    voucher once (not again on a re-sent receipt), 6,000 a second time, with a
    `voucher_issued` service notice the next day."""
    off = await aiohttp_client(create_app(make_settings()))
    await seed(off)
    await call(off, "POST", "/api/purchases", purchase(amount="3000", items=[]))
    assert (await member(off))["vouchers"] == []
    settings = make_settings(rewards={"auto": {"enabled": True}})
    client = await aiohttp_client(create_app(settings))
    for receipt, amount, at in (
        ("R2", "1000", "2026-03-11T14:00:00+08:00"),  # 4,000 in the year: one voucher
        ("R2", "1000", "2026-03-11T14:00:00+08:00"),  # re-sent: nothing more
        ("R3", "1500", "2026-06-01T14:00:00+08:00"),  # 5,500 - 3,000 used: none
        ("R4", "500", "2027-03-10T14:00:00+08:00"),  # R1 out of the year: 3,000 - 3,000
    ):
        status, _ = await call(client, "POST", "/api/purchases", purchase(receipt, amount, at=at))
        assert status in (200, 201)
    view = await member(client)
    assert len(view["vouchers"]) == 1 and view["points"] == 6000 - 3000
    # the first voucher (and R2) leave the year: R3 + R4 + R5 = 3,000 new points
    at = "2027-03-12T10:00:00+08:00"
    await call(client, "POST", "/api/purchases", purchase("R5", "1000", at=at))
    view = await member(client)
    assert len(view["vouchers"]) == 2 and view["points"] == 7000 - 6000
    async with transaction(sessions) as s:
        m = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
        assert await balance_check(s, member_id=m.id) == (1000, 1000, 1000)
    planned = await plan(sessions, settings, date(2026, 3, 12))
    notice = one(planned, m, "voucher_issued")
    assert view["vouchers"][0]["code"] in notice.text or view["vouchers"][1]["code"] in notice.text
