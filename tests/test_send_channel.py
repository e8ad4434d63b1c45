# ruff: noqa: F811  (the sender fixtures are imported from tests/test_sender.py)
"""The channel decided at send time (ISSUE10 13, 30): the WeChat customer-service window
as it is when the message goes — opened only by a message the member sent (a menu
click, a follow or a scan opens none for proactive messages), at most 5 messages in
it — and SMS / template / suppressed otherwise (MESSAGING.md "Channel choice")."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from bot.bot import MemberBot
from bot.conversation import Inbound
from models.db import transaction
from models.outbox.states import QUEUED, SENT, SUPPRESSED
from models.tables.members import Identity
from scheduler.send.sender import drain_until_idle
from tests.test_outbox import PHONE, T0, add_member, add_message, load, set_status
from tests.test_sender import (  # noqa: F401 (fixtures)
    OPENID,
    fake_twilio,
    fake_wechat,
    make_sender,
    wechat_identity,
)

CS = {"channel": "wechat", "via": "customer_service", "address": OPENID}


async def stamp(sessions) -> object:
    async with sessions() as s:
        return (
            await s.exec(select(Identity.last_inbound_at).where(Identity.address == OPENID))
        ).one()


# ------------------------------------------------------------------ 30: at send time


async def test_a_member_who_wrote_after_planning_gets_the_open_window(
    sessions, make_sender, fake_twilio, fake_wechat
):
    """Planned as SMS (the window was closed); the member writes; at send time it goes
    as a WeChat customer-service message, and only that way."""
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id, wrote_at=None)
    mid = await add_message(sessions, member_id=member_id)  # sms / twilio / PHONE
    async with transaction(sessions) as s:
        identity = (await s.exec(select(Identity).where(Identity.address == OPENID))).one()
        identity.last_inbound_at = T0 - timedelta(minutes=10)
    sender = await make_sender(wechat=fake_wechat)
    await drain_until_idle(sender, now=T0)
    msg = await load(sessions, mid)
    assert (msg.status, msg.channel, msg.via, msg.address) == (
        SENT, "wechat", "customer_service", OPENID
    )  # fmt: skip
    assert [m["touser"] for m in fake_wechat.sent] == [OPENID] and fake_twilio.messages == []


async def test_a_window_closed_since_planning_sends_by_sms_or_template(
    sessions, make_sender, fake_twilio, fake_wechat
):
    """Planned inside the window; it closed (49 h) before the send: a care message goes
    by SMS, a service notice by its template, nothing by customer service."""
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id, wrote_at=T0 - timedelta(hours=49))
    care = await add_message(sessions, member_id=member_id, channel="wechat",
                             via="customer_service", address=OPENID)  # fmt: skip
    notice = await add_message(sessions, member_id=member_id, kind="points_notice",
                               occasion="points:1", channel="wechat", via="customer_service",
                               address=OPENID)  # fmt: skip
    sender = await make_sender(wechat=fake_wechat, templates={"points_notice": "TPL"})
    await drain_until_idle(sender, now=T0)
    assert ((c := await load(sessions, care)).status, c.channel, c.address) == (SENT, "sms", PHONE)
    assert ((n := await load(sessions, notice)).status, n.via) == (SENT, "template")
    assert fake_wechat.sent == [] and len(fake_twilio.messages) == 1


async def test_a_window_closed_since_planning_with_no_other_channel_is_suppressed(
    sessions, make_sender, fake_twilio, fake_wechat
):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id, wrote_at=T0 - timedelta(hours=49))
    async with transaction(sessions) as s:
        s.add(Identity(member_id=member_id, channel="sms", address=PHONE, bad=True))
    mid = await add_message(sessions, member_id=member_id, channel="wechat",
                            via="customer_service", address=OPENID)  # fmt: skip
    sender = await make_sender(wechat=fake_wechat)
    await drain_until_idle(sender, now=T0)
    msg = await load(sessions, mid)
    assert (msg.status, msg.reason) == (SUPPRESSED, "no_channel")
    assert fake_wechat.sent == [] and fake_twilio.messages == []


# -------------------------------------------------------------- 13: the 5 messages


async def test_the_fifth_customer_service_message_is_the_last_in_a_window(
    sessions, make_sender, fake_twilio, fake_wechat
):
    """4 already sent since the member wrote; two more due in one pass: one goes by
    customer service, the other by SMS."""
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id, wrote_at=T0 - timedelta(hours=2))
    for i in range(4):
        done = await add_message(sessions, member_id=member_id, occasion=f"old{i}", **CS)
        await set_status(sessions, done, status=SENT, updated_at=T0 - timedelta(hours=1))
    before = await add_message(sessions, member_id=member_id, occasion="before", **CS)
    await set_status(sessions, before, status=SENT, updated_at=T0 - timedelta(hours=3))
    due = [await add_message(sessions, member_id=member_id, occasion=f"new{i}", **CS)
           for i in range(2)]  # fmt: skip
    sender = await make_sender(wechat=fake_wechat)
    await drain_until_idle(sender, now=T0)
    vias = sorted([(await load(sessions, i)).via for i in due])
    assert vias == ["customer_service", "twilio"]
    assert len(fake_wechat.sent) == 1 and len(fake_twilio.messages) == 1


# ------------------------------------------------------------ 13: what opens a window


async def test_a_menu_click_or_a_follow_opens_no_window_for_proactive_messages(
    settings, sessions, make_sender, fake_twilio, fake_wechat
):
    """A click (and a follow) is answered but stamps nothing; a greeting due after it
    goes by SMS. A message the member writes opens the window."""
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=None, clock=lambda: T0)
    await bot.handle(Inbound(channel="wechat", sender=OPENID, event="subscribe"))
    await bot.handle(Inbound(channel="wechat", sender=OPENID, event="click",
                             event_key="MENU_HELP"))  # fmt: skip
    assert await stamp(sessions) is None
    member_id = await add_member(sessions)
    async with transaction(sessions) as s:
        identity = (await s.exec(select(Identity).where(Identity.address == OPENID))).one()
        identity.member_id = member_id
    await bot.handle(Inbound(channel="wechat", sender=OPENID, event="click",
                             event_key="MENU_HELP"))  # fmt: skip
    assert await stamp(sessions) is None
    mid = await add_message(sessions, member_id=member_id, kind="birthday", occasion="bd:2026")
    sender = await make_sender(wechat=fake_wechat)
    await drain_until_idle(sender, now=T0)
    assert ((await load(sessions, mid)).via, fake_wechat.sent) == ("twilio", [])

    await bot.handle(Inbound(channel="wechat", sender=OPENID, text="你好", message_id="m1"))
    assert await stamp(sessions) == T0
    later = await add_message(sessions, member_id=member_id, occasion="after")
    await drain_until_idle(sender, now=T0 + timedelta(minutes=1))
    assert ((await load(sessions, later)).via, len(fake_wechat.sent)) == ("customer_service", 1)
    assert (await load(sessions, later)).status != QUEUED
