"""The till in the staff console: voucher look-up, use (any staff, at their store), void
(managers, points back), the member page's vouchers and points history, and a manager's
adjustment with who and why."""

from __future__ import annotations

import re

from sqlmodel import select

from models.db import transaction
from models.points import post_points
from models.tables.ledger import PointsEntry
from models.tables.members import Member
from models.tables.till import VoucherEvent
from models.types import utcnow
from models.vouchers import redeem
from tests.test_staff_console import client, csrf_of, sign_in, world  # noqa: F401  (fixtures)

KEY = re.compile(r'name="key" value="([^"]+)"')


async def _voucher(sessions, settings, member_id: int, key: str = "k") -> str:
    now = utcnow()
    async with transaction(sessions) as s:
        await post_points(
            s,
            rules=settings.points,
            member_id=member_id,
            delta=3200,
            reason="adjustment",
            key=f"seed:{key}",
            at=now,
            local_date=now.date(),
        )
        v, _ = await redeem(
            s,
            rules=settings.loyalty,
            tz=settings.brand.tz,
            member_id=member_id,
            reward_code="v300",
            key=key,
            now=now,
        )
        return v.code


async def test_staff_look_up_and_use_a_voucher_at_their_store(client, world, sessions, settings):  # noqa: F811
    code = await _voucher(sessions, settings, world.members["张三"])
    await sign_in(client, world.tokens["A001"])
    resp = await client.get(f"/staff/vouchers?code={code.lower()}")
    page = await resp.text()
    assert resp.status == 200 and code in page and "可用" in page
    assert 'id="voucher-void"' not in page  # voiding is for managers
    resp = await client.get("/staff/vouchers?code=NOSUCH")
    assert resp.status == 404 and "没有这个券号" in await resp.text()
    token = await csrf_of(client, "/staff/vouchers")
    resp = await client.post(
        "/staff/vouchers/use",
        data={"csrf_token": token, "code": code, "receipt_no": "R77"},
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await (await client.get(resp.headers["Location"])).text()
    assert "已核销" in page and "staff:A001" in page and "R77" in page and "S001" in page
    resp = await client.post("/staff/vouchers/use", data={"csrf_token": token, "code": code})
    assert resp.status == 409 and "used" in await resp.text()
    resp = await client.post("/staff/vouchers/void", data={"csrf_token": token, "code": code})
    assert resp.status == 403  # an assistant may not void
    # the member page lists the voucher as used
    page = await (await client.get(f"/staff/members/{world.members['张三']}")).text()
    assert code in page and "已使用" in page and "积分明细" in page


async def test_a_manager_voids_with_a_reason_and_the_points_come_back(
    client,  # noqa: F811
    world,  # noqa: F811
    sessions,
    settings,
):
    member_id = world.members["张三"]
    code = await _voucher(sessions, settings, member_id)
    await sign_in(client, world.tokens["M01"])
    token = await csrf_of(client, "/staff/vouchers")
    resp = await client.post("/staff/vouchers/void", data={"csrf_token": token, "code": code})
    assert resp.status == 422  # a reason is required
    resp = await client.post(
        "/staff/vouchers/void",
        data={"csrf_token": token, "code": code, "reason": "wrong reward"},
        allow_redirects=False,
    )
    assert resp.status == 303
    async with transaction(sessions) as s:
        assert (await s.get(Member, member_id)).points == 3200
        event = (await s.exec(select(VoucherEvent))).one()
        assert (event.action, event.actor, event.reason) == ("void", "staff:M01", "wrong reward")


async def test_a_manager_adjusts_points_once_per_form_with_who_and_why(
    client,  # noqa: F811
    world,  # noqa: F811
    sessions,
):
    member_id = world.members["张三"]
    await sign_in(client, world.tokens["M01"])
    page = await (await client.get(f"/staff/members/{member_id}")).text()
    form = {"csrf_token": await csrf_of(client, f"/staff/members/{member_id}")}
    form.update(key=KEY.search(page).group(1), points="150", reason="lost receipt")
    for _ in range(2):  # a double submit of one form adjusts once
        resp = await client.post(f"/staff/members/{member_id}/adjust", data=form)
        assert resp.status == 200
    page = await resp.text()
    assert "+150" in page and "staff:M01: lost receipt" in page
    async with transaction(sessions) as s:
        rows = (await s.exec(select(PointsEntry).where(PointsEntry.member_id == member_id))).all()
    assert [(e.delta, e.reason) for e in rows] == [(150, "adjustment")]
    bad = await client.post(
        f"/staff/members/{member_id}/adjust", data={**form, "key": "k2", "points": "1x"}
    )
    assert bad.status == 422
    await client.post("/staff/signout", data={"csrf_token": form["csrf_token"]})
    await sign_in(client, world.tokens["A001"])
    token = await csrf_of(client)
    resp = await client.post(
        f"/staff/members/{member_id}/adjust", data={**form, "csrf_token": token, "key": "k3"}
    )
    assert resp.status == 403
