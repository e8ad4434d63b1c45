"""One sender's changing messages are handled one at a time on SMS as on WeChat (issue
10, point 28): a CONFIRM that arrives while the REDEEM before it is still being
handled waits for it and confirms what it stored, instead of "nothing waiting"."""

from __future__ import annotations

import asyncio

import pytest

from bot.bot import MemberBot
from bot.conversation import Inbound
from bot.handlers import pending
from models.db import transaction
from models.tables.members import Identity
from tests.factories import make_member, make_store
from tests.test_conversation import NOW, PHONE, Clock, FakeSms, buy

OPENID = "o-serial"


@pytest.fixture
def bot(settings, sessions):
    return MemberBot(settings=settings, sessions=sessions, sms_sender=FakeSms(), clock=Clock(NOW))


@pytest.mark.parametrize("channel", ["sms", "wechat"])
async def test_a_confirm_right_behind_a_redeem_confirms_it(
    bot, settings, sessions, monkeypatch, channel
):
    async with transaction(sessions) as s:
        member = await make_member(s, phone=PHONE, store=await make_store(s))
        s.add(Identity(member_id=member.id, channel="wechat", address=OPENID))
    await buy(settings, sessions, amount="3200", receipt="R1")
    sender = PHONE if channel == "sms" else OPENID

    stored, go_on = asyncio.Event(), asyncio.Event()
    put = pending.put

    async def slow_put(turn, **kw):  # the REDEEM stores its pending action, then lingers
        row = await put(turn, **kw)
        stored.set()
        await go_on.wait()
        return row

    monkeypatch.setattr(pending, "put", slow_put)
    redeem = asyncio.create_task(bot.handle(Inbound(channel=channel, sender=sender, text="兑换 1")))
    await asyncio.wait_for(stored.wait(), 10)
    confirm = asyncio.create_task(bot.handle(Inbound(channel=channel, sender=sender, text="确认")))
    await asyncio.sleep(0.3)  # the CONFIRM arrives while the REDEEM is still being handled
    go_on.set()
    asked, done = await redeem, await confirm
    assert asked.effects == ("redeem_pending",)
    assert done.effects == ("redeemed",), done.text
