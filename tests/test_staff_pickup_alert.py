"""The console alerts the member's assistant and the store manager when a card's pickup
was missed after the second notice and there is no address to mail it to (DOMAIN.md §5:
the daily job mails such a card only when it has an address)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bot.app import create_app
from models import cards
from models.clock import brand_today
from models.db import transaction
from models.tables.members import Member
from tests.test_staff_console import seed, sign_in


@pytest.fixture
async def world(sessions, settings):
    return await seed(sessions, settings)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def second_notice(sessions, settings, application_id: int, *, on: date) -> None:
    """Approve 李四's card, notify with a pickup day before `on`, notify again on `on`."""
    tz = settings.brand.tz
    steps = [("entered", 5, None), ("sent_to_head_office", 5, None), ("approved", 4, None),
             ("notified", 3, on - timedelta(days=1)), ("notified_again", 0, None)]  # fmt: skip
    for to_status, days_before, pickup in steps:
        at = datetime.combine(on - timedelta(days=days_before), time(11, 0), tz)
        async with transaction(sessions) as s:
            await cards.advance(
                s, rules=settings.loyalty, application_id=application_id, to_status=to_status,
                actor="api", now=at.astimezone(UTC), tz=tz, pickup_date=pickup,
            )  # fmt: skip


def alert(page: str) -> str:
    if 'id="unmailable"' not in page:
        return ""
    return page.split('id="unmailable"')[1].split("</section>")[0]


async def test_a_card_missed_twice_without_an_address_is_an_alert(
    client, world, sessions, settings
):
    today = brand_today(settings.brand.tz)
    await second_notice(sessions, settings, world.application_id, on=today - timedelta(days=2))

    await sign_in(client, world.tokens["A001"])  # 李四's assistant
    for path in ("/staff/today", "/staff/cards"):
        box = alert(await (await client.get(path)).text())
        assert "两次未来领卡且没有邮寄地址（1）" in box, path
        assert "李四" in box and f"/staff/members/{world.members['李四']}" in box
        assert "+86139****9001" in box and "+8613900139001" not in box
        assert f"再次通知 {(today - timedelta(days=2)).isoformat()}" in box
    cards_page = await (await client.get("/staff/cards")).text()
    row = cards_page.split(f'id="application-{world.application_id}"')[1].split("</tr>")[0]
    assert "无邮寄地址" in row

    client.session.cookie_jar.clear()
    await sign_in(client, world.tokens["M01"])
    assert "李四" in alert(await (await client.get("/staff/today")).text())

    client.session.cookie_jar.clear()
    await sign_in(client, world.tokens["A002"])  # not their member
    assert alert(await (await client.get("/staff/today")).text()) == ""
    assert alert(await (await client.get("/staff/cards")).text()) == ""


@pytest.mark.parametrize(
    ("days_ago", "address", "alerted"),
    [(2, None, True), (1, None, False), (2, "上海市静安区南京西路1号", False), (2, "  ", True)],
    ids=["missed-no-address", "may-still-come", "has-address", "blank-address"],
)
async def test_only_a_missed_second_notice_without_an_address_alerts(
    client, world, sessions, settings, days_ago, address, alerted
):
    today = brand_today(settings.brand.tz)
    async with transaction(sessions) as s:
        member = await s.get(Member, world.members["李四"])
        member.address = address
        s.add(member)
    await second_notice(
        sessions, settings, world.application_id, on=today - timedelta(days=days_ago)
    )
    await sign_in(client, world.tokens["A001"])
    for path in ("/staff/today", "/staff/cards"):
        assert ("李四" in alert(await (await client.get(path)).text())) is alerted, path
