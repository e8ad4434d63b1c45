"""The staff console's Today page shows each follow-up's real outbox state (sent,
suppressed with the reason, …) or "not queued", not the plan's intention."""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal

import pytest
from sqlmodel import col, select

from bot.app import create_app
from models.clock import brand_today
from models.db import transaction
from models.kinds import CARE_KINDS
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.tables.outbox import OutboxMessage
from scheduler.plan.care_calendar import sale_day
from scheduler.plan.planner import save_day
from tests.test_staff_console import seed, sign_in


@pytest.fixture
async def world(sessions, settings):
    return await seed(sessions, settings)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def buy(sessions, settings, *, phone: str, receipt: str) -> None:
    tz = settings.brand.tz
    day = sale_day(brand_today(tz), settings.messaging.care_days.care_d3)
    async with transaction(sessions) as s:
        await record_purchase(
            s,
            rules=settings.loyalty,
            tz=tz,
            data=PurchaseIn(
                receipt_no=receipt,
                phone=phone,
                store="S001",
                amount=Decimal("100"),
                at=datetime.combine(day, time(12, 0), tz),
            ),
        )


def care_row(page: str, name: str) -> str:
    table = page.split('id="care-due"')[1].split("</table>")[0]
    rows = [r for r in table.split("<tr>") if name in r]
    assert len(rows) == 1, table
    return rows[0]


async def test_today_shows_the_outbox_state_of_each_follow_up(client, world, sessions, settings):
    tz = settings.brand.tz
    today = brand_today(tz)
    await buy(sessions, settings, phone="+8613800138000", receipt="R-1")  # 张三
    async with transaction(sessions) as s:
        await save_day(s, settings=settings, day=today, now=datetime.now(tz))
    # 李四 bought the same day, but after today's plan was saved: nothing queued yet.
    await buy(sessions, settings, phone="+8613900139001", receipt="R-2")
    async with transaction(sessions) as s:
        rows = list(
            await s.exec(
                select(OutboxMessage).where(
                    OutboxMessage.member_id == world.members["张三"],
                    col(OutboxMessage.kind).in_(CARE_KINDS),
                )
            )
        )
        assert [r.kind for r in rows] == ["care_d3"]
        rows[0].status = "sent"
        rows[0].channel = "sms"
        s.add(rows[0])

    await sign_in(client, world.tokens["A001"])
    page = await (await client.get("/staff/today")).text()
    zhang = care_row(page, "张三")
    assert 'data-outbox="sent"' in zhang and "已发送" in zhang and "sms" in zhang
    assert "待发送" not in zhang
    li = care_row(page, "李四")
    assert 'data-outbox="none"' in li and "尚未进入发送队列" in li
    assert "今日计划发送" in li

    async with transaction(sessions) as s:
        row = await s.get(OutboxMessage, rows[0].id)
        row.status, row.reason = "suppressed", "stopped"
        s.add(row)
    page = await (await client.get("/staff/today")).text()
    zhang = care_row(page, "张三")
    assert 'data-outbox="suppressed"' in zhang and "未发送" in zhang and "(stopped)" in zhang
