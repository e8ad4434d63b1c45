"""Answers that say what happened and what to do next (issue 10, point 20): a stop that
cancels a pending redemption says so; help is help for anyone; an unbound openid's
resume word is explained; an openid waiting for its code is asked for the code."""

from __future__ import annotations

import pytest

from bot.bot import MemberBot
from bot.handlers import pending
from models.db import transaction
from tests.factories import make_store
from tests.test_conversation import NOW, Clock, FakeSms, add_member, buy, sms_in, wechat_in


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def bot(settings, sessions, clock):
    return MemberBot(settings=settings, sessions=sessions, sms_sender=FakeSms(), clock=clock)


@pytest.fixture
async def store(sessions):
    async with transaction(sessions) as s:
        return await make_store(s)


async def test_a_stop_during_a_pending_redemption_says_it_cancelled_it(
    bot, settings, sessions, store
):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    await bot.handle(sms_in("兑换 1"))
    reply = await bot.handle(sms_in("TD"))
    assert reply.effects == ("stopped",)
    assert reply.text.startswith("（刚才的兑换申请已取消。）\n已为您退订")


async def test_a_stop_after_the_window_mentions_no_cancellation(
    bot, settings, sessions, store, clock
):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    await bot.handle(sms_in("REDEEM 1"))
    clock.advance(minutes=pending.CONFIRM_WINDOW_MINUTES + 1)
    reply = await bot.handle(sms_in("STOP"))
    assert reply.effects == ("stopped",) and "取消" not in reply.text


async def test_help_from_an_unbound_openid_is_help_with_how_to_bind(bot):
    text = (await bot.handle(wechat_in("帮助"))).text
    assert "绑定+手机号" in text and "积分 — 查积分和等级" in text


async def test_help_from_a_number_that_is_no_member_is_help_with_how_to_join(bot):
    text = (await bot.handle(sms_in("帮助"))).text
    assert "免费加入" in text and "兑换 — 用积分换礼品" in text


async def test_help_for_a_member_has_no_joining_line(bot, sessions, store):
    await add_member(sessions, store)
    text = (await bot.handle(sms_in("帮助"))).text
    assert text.startswith("您可以回复：") and "加入" not in text


async def test_resume_from_an_unbound_openid_is_explained(bot):
    text = (await bot.handle(wechat_in("接受"))).text
    assert "还没有绑定会员" in text and "无需恢复" in text


async def test_points_while_a_code_is_waiting_asks_for_the_code(bot, sessions, store, clock):
    await add_member(sessions, store)
    await bot.handle(wechat_in("绑定 13800138000"))
    text = (await bot.handle(wechat_in("积分"))).text
    assert "请直接把短信里的 6 位验证码回复给我" in text and "+86138****8000" in text
    assert "例如" not in text  # not the whole instruction again
    clock.advance(minutes=11)  # the code expired: the instruction again
    assert "例如：绑定 13800138000" in (await bot.handle(wechat_in("积分"))).text


async def _bind(sessions, phone: str, openid: str) -> None:
    from sqlmodel import select

    from models.tables.members import Identity, Member

    async with transaction(sessions) as s:
        member = (await s.exec(select(Member).where(Member.phone == phone))).one()
        s.add(Identity(member_id=member.id, channel="wechat", address=openid))


@pytest.mark.parametrize("quick", [True, False])
async def test_points_past_their_last_day_are_not_counted_before_the_daily_job(
    make_settings, sessions, clock, quick
):
    from datetime import timedelta

    settings = make_settings(points={"expiry": {"policy": "calendar_year"}})
    bot = MemberBot(
        settings=settings, sessions=sessions, sms_sender=FakeSms(), clock=clock, quick=quick
    )
    async with transaction(sessions) as s:
        store = await make_store(s)
    await add_member(sessions, store)
    await buy(settings, sessions, amount="500", receipt="OLD", at=NOW - timedelta(days=400))
    await buy(settings, sessions, amount="800", receipt="NEW")
    await _bind(sessions, "+8613800138000", "o-exp")
    # 500 points lapsed on 31 Dec 2025; the daily job has not expired them.
    quick_or_not = await bot.handle(wechat_in("积分", openid="o-exp"))
    for reply in (quick_or_not, await bot.handle(sms_in("积分"))):
        assert "800 分" in reply.text and "1,300" not in reply.text, reply.text
