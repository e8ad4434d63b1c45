"""The member bot's conversation (CONTRACT.md "Member keywords"), driven through
`MemberBot.handle` with plain `Inbound` values, an injected clock and a recording
SMS sender. End-to-end tests through the webhooks live with the channel adapters."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import col, func, select

from bot.bot import MemberBot
from bot.chat import run_chat
from bot.conversation import Inbound, Reply
from models import card_reads, cards, consent
from models.db import transaction
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.tables.cards import CardApplication, CardEvent
from models.tables.conversation import BindCode, PendingAction
from models.tables.ledger import PointsEntry, Voucher
from models.tables.members import ConsentEvent, Identity, Member
from models.vouchers import redeem
from scheduler.send.providers import SentSms, SmsSendError
from tests.factories import make_member, make_store

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # Wednesday 25 Nov 2026, 10:00 in Shanghai
PHONE = "+8613800138000"
OTHER_PHONE = "+8613900139000"
OPENID = "oWX-openid-0001"


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


class FakeSms:
    """Records what the bot asked to send; `fail` makes the next sends raise."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []
        self.fail = False

    async def send(self, to: str, body: str, *, status_callback: str | None = None) -> SentSms:
        if self.fail:
            raise SmsSendError("provider down", kind="retry", http_status=503)
        self.sent.append((to, body))
        return SentSms(provider_id=f"fake-{len(self.sent)}", status="queued")

    def code_for(self, phone: str) -> str:
        bodies = [b for to, b in self.sent if to == phone]
        return re.search(r"\b(\d{6})\b", bodies[-1]).group(1)


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def sms():
    return FakeSms()


@pytest.fixture
def bot(settings, sessions, sms, clock):
    return MemberBot(settings=settings, sessions=sessions, sms_sender=sms, clock=clock)


@pytest.fixture
async def store(sessions):
    async with transaction(sessions) as s:
        return await make_store(s)


async def add_member(sessions, store, *, phone=PHONE, name="张三", **fields) -> Member:
    birthday = fields.pop("birthday", None)
    tier = fields.pop("tier", "points")
    async with transaction(sessions) as s:
        member = await make_member(
            s, phone=phone, name=name, store=store, birthday=birthday, tier=tier
        )
        for key, value in fields.items():
            setattr(member, key, value)
        s.add(member)
    return member


async def buy(settings, sessions, *, phone=PHONE, amount: str, receipt: str, at=None) -> None:
    async with transaction(sessions) as s:
        await record_purchase(
            s,
            rules=settings.loyalty,
            tz=settings.brand.tz,
            data=PurchaseIn(
                receipt_no=receipt,
                phone=phone,
                store="S001",
                amount=Decimal(amount),
                at=at or NOW - timedelta(days=5),
            ),
        )


async def member_row(sessions, phone=PHONE) -> Member:
    async with sessions() as s:
        return (await s.exec(select(Member).where(Member.phone == phone))).one()


async def count(sessions, model, *where) -> int:
    async with sessions() as s:
        return (await s.exec(select(func.count()).select_from(model).where(*where))).one()


def sms_in(text: str, sender: str = PHONE) -> Inbound:
    return Inbound(channel="sms", sender=sender, text=text)


def wechat_in(text: str, openid: str = OPENID) -> Inbound:
    return Inbound(channel="wechat", sender=openid, text=text)


def wechat_event(event: str, key: str | None = None, openid: str = OPENID) -> Inbound:
    return Inbound(channel="wechat", sender=openid, event=event, event_key=key)


async def say(bot: MemberBot, text: str, sender: str = PHONE) -> str:
    reply = await bot.handle(sms_in(text, sender))
    assert reply.text, f"no answer to {text!r}"
    return reply.text


# --------------------------------------------------------------------------- points


async def test_points_answer_has_balance_tier_spend_and_what_is_missing(
    bot, settings, sessions, store
):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="2500", receipt="R1")
    text = await say(bot, "积分")
    assert "2,500 分" in text
    assert "普卡" in text
    assert "2500元" in text
    assert "再积 500 分可兑换「300元代金券」" in text
    # Scheme A: gold at 3,000 points within half a year; the purchase on 11-20 leaves the
    # window on 2027-05-20, so the missing 500 points must be earned by 2027-05-19.
    assert "再积 500 分可升级金卡（2027年5月19日前）" in text
    assert "到期" not in text  # default policy: points never expire
    assert "生日" not in text


async def test_points_answer_names_next_expiry(make_settings, sessions, sms, clock, store):
    settings = make_settings(points={"expiry": {"policy": "calendar_year"}})
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=sms, clock=clock)
    await add_member(sessions, store)
    await buy(settings, sessions, amount="120", receipt="R1")
    text = await say(bot, "JF")
    assert "有 120 分将于 2026年12月31日 到期" in text


async def test_points_when_a_reward_is_affordable(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    text = await say(bot, "查积分")
    assert "3,200 分" in text
    assert "积分已够兑换「300元代金券」" in text
    assert "金卡" in text  # reached gold with this purchase (Scheme A)
    assert "钻石卡" in text and "再积 4,800 分" in text


async def test_birthday_multiplier_only_on_the_birthday(bot, settings, sessions, store, clock):
    await add_member(sessions, store, birthday="1990-11-25", tier="gold")
    text = await say(bot, "积分")
    assert "生日快乐" in text and "2 倍积分" in text
    clock.advance(days=1)
    assert "倍积分" not in await say(bot, "积分")


async def test_no_birthday_multiplier_for_a_tier_without_one(bot, sessions, store):
    await add_member(sessions, store, birthday="11-25", tier="points")
    assert "倍积分" not in await say(bot, "积分")


async def test_english_member_gets_english(bot, settings, sessions, store):
    await add_member(sessions, store, name="Ann", locale="en")
    await buy(settings, sessions, amount="2500", receipt="R1")
    text = await say(bot, "POINTS")
    assert "Points: 2,500" in text
    assert "Points card" in text
    assert "¥2,500" in text
    assert '500 more points for "300-yuan voucher"' in text
    assert "19 May 2027" in text
    assert "积分" not in text


# --------------------------------------------------------------------------- rewards


async def test_list_redeem_confirm_issues_one_voucher(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    listing = await say(bot, "兑换")
    assert "1. 300元代金券（3,000 分）" in listing
    assert "您现在有 3,200 分" in listing

    ask = await say(bot, "兑换 1")
    assert "确认用 3,000 分兑换「300元代金券」吗" in ask
    assert "剩余 200 分" in ask

    reply = await bot.handle(sms_in("确认"))
    assert reply.effects == ("redeemed",)
    voucher = (await _vouchers(sessions))[0]
    assert voucher.code in reply.text
    assert "300元" in reply.text and "2027年2月23日" in reply.text  # 90 days
    assert "剩余积分 200 分" in reply.text
    assert (await member_row(sessions)).points == 200
    assert await count(sessions, PointsEntry, PointsEntry.reason == "redemption") == 1


async def _vouchers(sessions) -> list[Voucher]:
    async with sessions() as s:
        return list((await s.exec(select(Voucher).order_by(col(Voucher.id)))).all())


async def test_confirm_twice_redeems_once(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="6500", receipt="R1")  # enough for two
    await say(bot, "REDEEM 1")
    first = await bot.handle(sms_in("CONFIRM"))
    again = await bot.handle(sms_in("yes"))
    assert first.effects == ("redeemed",) and again.effects == ()
    assert first.text == again.text
    assert len(await _vouchers(sessions)) == 1
    assert (await member_row(sessions)).points == 3500


async def test_simultaneous_confirmations_redeem_once(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="6500", receipt="R1")
    await say(bot, "兑换 1")
    replies = await asyncio.gather(*(bot.handle(sms_in("确认")) for _ in range(3)))
    assert sorted(r.effects for r in replies) == [(), (), ("redeemed",)]
    assert len({r.text for r in replies}) == 1
    assert len(await _vouchers(sessions)) == 1
    assert (await member_row(sessions)).points == 3500


async def test_a_new_request_after_a_redemption_is_a_new_redemption(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="6500", receipt="R1")
    for _ in range(2):
        await say(bot, "兑换1")
        await say(bot, "确认")
    assert len(await _vouchers(sessions)) == 2
    assert (await member_row(sessions)).points == 500


async def test_confirm_after_ten_minutes_is_cancelled(bot, settings, sessions, store, clock):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    await say(bot, "兑换 1")
    clock.advance(minutes=10)
    text = await say(bot, "确认")
    assert "已超过确认时间" in text
    assert await _vouchers(sessions) == []
    assert (await member_row(sessions)).points == 3200
    assert "没有需要确认" in await say(bot, "确认")


async def test_confirm_just_inside_ten_minutes_redeems(bot, settings, sessions, store, clock):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    await say(bot, "兑换 1")
    clock.advance(minutes=9, seconds=59)
    assert "兑换成功" in await say(bot, "确认")


async def test_anything_else_cancels_the_redemption(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    await say(bot, "兑换 1")
    text = await say(bot, "积分")
    assert text.startswith("（刚才的兑换申请已取消。）")
    assert "3,200 分" in text
    assert "没有需要确认" in await say(bot, "确认")
    assert await _vouchers(sessions) == []
    assert await count(sessions, PendingAction) == 0


async def test_insufficient_points(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="1200", receipt="R1")
    text = await say(bot, "兑换 1")
    assert "还差 1,800 分" in text
    assert await count(sessions, PendingAction) == 0
    assert "没有需要确认" in await say(bot, "确认")


async def test_points_spent_elsewhere_before_the_confirmation(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    await say(bot, "兑换 1")
    async with transaction(sessions) as s:  # e.g. a redemption at the counter meanwhile
        await redeem(
            s, rules=settings.loyalty, tz=settings.brand.tz,
            member_id=(await member_row(sessions)).id, reward_code="v300", key="till-1", now=NOW,
        )
    text = await say(bot, "确认")
    assert "还差 2,800 分" in text
    assert len(await _vouchers(sessions)) == 1


async def test_unknown_reward_number(bot, settings, sessions, store):
    await add_member(sessions, store)
    text = await say(bot, "兑换 7")
    assert "没有第 7 号礼品" in text and "1. 300元代金券" in text


# --------------------------------------------------------------------------- stop / resume


async def test_stop_during_a_pending_redemption_stops_and_cancels(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    await say(bot, "兑换 1")
    reply = await bot.handle(sms_in("T"))
    assert reply.effects == ("stopped",)
    assert "已为您退订" in reply.text
    assert (await member_row(sessions)).stopped
    assert "没有需要确认" in await say(bot, "确认")
    assert await _vouchers(sessions) == []


async def test_stop_is_recorded_once_with_its_channel(bot, sessions, store, clock):
    member = await add_member(sessions, store)
    first = await bot.handle(sms_in("退订"))
    clock.advance(minutes=1)
    second = await bot.handle(sms_in("STOP"))
    assert first.effects == ("stopped",) and "已为您退订" in first.text
    assert second.effects == () and "您已经退订了" in second.text
    async with sessions() as s:
        history = await consent.history(s, member_id=member.id)
    assert [(e.action, e.channel, e.at) for e in history] == [("stop", "sms", NOW)]
    assert "退订" in history[0].source


async def test_stopped_member_still_gets_answers(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="500", receipt="R1")
    await say(bot, "TD")
    assert "500 分" in await say(bot, "积分")


async def test_resume(bot, sessions, store):
    await add_member(sessions, store)
    await say(bot, "不接受")
    reply = await bot.handle(sms_in("接受"))
    assert reply.effects == ("resumed",)
    assert not (await member_row(sessions)).stopped
    assert "无需重复订阅" in await say(bot, "START")
    assert await count(sessions, ConsentEvent) == 2


async def test_stop_from_wechat_is_recorded_as_wechat(bot, sessions, store):
    member = await add_member(sessions, store)
    await _bind_directly(sessions, member)
    reply = await bot.handle(wechat_in("退订"))
    assert reply.effects == ("stopped",)
    async with sessions() as s:
        history = await consent.history(s, member_id=member.id)
    assert [e.channel for e in history] == ["wechat"]


async def test_stop_from_a_non_member_number_is_confirmed_and_kept_by_address(bot, sessions):
    reply = await bot.handle(sms_in("STOP", sender=OTHER_PHONE))
    assert reply.text and "不会主动给这个号码发送消息" in reply.text
    assert await count(sessions, ConsentEvent) == 1  # no member yet: kept by address


# --------------------------------------------------------------------------- vouchers


async def test_vouchers_list_and_none(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3000", receipt="R1")
    none = await say(bot, "我的券")
    assert "还没有可用的券" in none and "3,000 分就能兑换" in none
    await say(bot, "兑换 1")
    await say(bot, "确认")
    text = await say(bot, "券")
    voucher = (await _vouchers(sessions))[0]
    assert voucher.code in text and "300元券" in text and "2027年2月23日前有效" in text


# --------------------------------------------------------------------------- card pickup


async def _card(settings, sessions, member: Member, status: str = "approved") -> int:
    async with transaction(sessions) as s:
        app = await cards.open_application(
            s, member=member, tier="gold", actor="api", now=NOW - timedelta(days=10)
        )
        for step in ("entered", "sent_to_head_office", "approved", "notified", "notified_again"):
            if app.status == status:
                break
            await cards.advance(
                s, rules=settings.loyalty, application_id=app.id, to_status=step,
                actor="api", now=NOW - timedelta(days=3),
            )
        return app.id


async def _application(sessions, app_id: int) -> CardApplication:
    async with sessions() as s:
        return await s.get(CardApplication, app_id)


async def _events(sessions, app_id: int) -> list[CardEvent]:
    async with sessions() as s:
        return list(await card_reads.events(s, application_id=app_id))


async def test_card_none(bot, sessions, store):
    await add_member(sessions, store)
    assert "没有正在办理的会员卡" in await say(bot, "领卡")


async def test_card_none_but_eligible(bot, sessions, store):
    await add_member(sessions, store, eligible_tier="gold")
    assert "您已经符合金卡的条件" in await say(bot, "LK")


async def test_card_in_progress(bot, settings, sessions, store):
    member = await add_member(sessions, store)
    await _card(settings, sessions, member, status="sent_to_head_office")
    assert "您的金卡已送总部审批" in await say(bot, "领卡 明天")


async def test_card_pickup_asks_for_a_day_then_records_it(bot, settings, sessions, store):
    member = await add_member(sessions, store)
    app_id = await _card(settings, sessions, member)
    assert "哪天方便来" in await say(bot, "领卡")
    reply = await bot.handle(sms_in("领卡 周六"))
    assert reply.effects == ("pickup_date",)
    assert "11月28日 周六" in reply.text
    app = await _application(sessions, app_id)
    assert (app.status, app.pickup_date) == ("notified", date(2026, 11, 28))
    last = (await _events(sessions, app_id))[-1]
    assert (last.from_status, last.to_status, last.actor) == ("approved", "notified", "member:sms")
    # Changing the day later only moves the date (no new step).
    await say(bot, "领卡 12-01")
    app = await _application(sessions, app_id)
    assert (app.status, app.pickup_date) == ("notified", date(2026, 12, 1))
    assert len(await _events(sessions, app_id)) == 5


async def test_card_pickup_refuses_past_invalid_and_far_days(bot, settings, sessions, store):
    member = await add_member(sessions, store)
    app_id = await _card(settings, sessions, member)
    assert "已经过去了" in await say(bot, "领卡 11-20")
    assert "没看懂“someday”" in await say(bot, "pickup someday")
    assert "有点远" in await say(bot, "领卡 2027-03-01")
    app = await _application(sessions, app_id)
    assert (app.status, app.pickup_date) == ("approved", None)


async def test_card_mail_shows_masked_address_then_mails(bot, settings, sessions, store):
    member = await add_member(sessions, store, address="上海市静安区南京西路1234号5楼")
    app_id = await _card(settings, sessions, member, status="notified_again")
    ask = await say(bot, "寄卡")
    assert "上海市静安区****" in ask and "1234" not in ask
    reply = await bot.handle(sms_in("确认"))
    assert reply.effects == ("mailed",)
    assert "上海市静安区****" in reply.text
    app = await _application(sessions, app_id)
    assert (app.status, app.mail_address) == ("mailed", "上海市静安区南京西路1234号5楼")
    last = (await _events(sessions, app_id))[-1]
    assert (last.to_status, last.actor) == ("mailed", "member:sms")
    assert "已寄出" in await say(bot, "领卡")


async def test_card_mail_without_address(bot, settings, sessions, store):
    member = await add_member(sessions, store)
    await _card(settings, sessions, member)
    assert "还没有您的邮寄地址" in await say(bot, "MAIL")
    assert await count(sessions, PendingAction) == 0


async def test_card_mail_cancelled_by_another_message(bot, settings, sessions, store):
    member = await add_member(sessions, store, address="上海市静安区南京西路1234号5楼")
    app_id = await _card(settings, sessions, member)
    await say(bot, "寄卡")
    assert (await say(bot, "帮助")).startswith("（刚才的寄卡申请已取消。）")
    assert "没有需要确认" in await say(bot, "确认")
    assert (await _application(sessions, app_id)).status == "approved"


# --------------------------------------------------------------------------- binding


async def _bind_directly(sessions, member: Member, openid: str = OPENID) -> None:
    async with transaction(sessions) as s:
        s.add(Identity(member_id=member.id, channel="wechat", address=openid))


async def test_unbound_wechat_user_gets_only_bind_instructions(bot, settings, sessions, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="3200", receipt="R1")
    for text in ("积分", "兑换", "兑换 1", "券", "领卡", "寄卡", "确认", "你好"):
        reply = await bot.handle(wechat_in(text))
        assert "绑定" in reply.text, text
        assert "3,200" not in reply.text and "3200" not in reply.text
    assert await count(sessions, PendingAction) == 0


async def test_bind_sends_a_code_and_the_code_links_the_openid(bot, settings, sessions, sms, store):
    await add_member(sessions, store)
    await buy(settings, sessions, amount="800", receipt="R1")
    reply = await bot.handle(wechat_in("绑定 138 0013 8000"))
    assert reply.effects == ("bind_code_requested",)
    assert "+86138****8000" in reply.text
    assert [to for to, _ in sms.sent] == [PHONE]
    code = sms.code_for(PHONE)
    async with sessions() as s:
        row = (await s.exec(select(BindCode))).one()
    assert code not in (row.code_hash, row.salt)
    # Other messages in between neither cancel nor use the code.
    assert "绑定" in (await bot.handle(wechat_in("积分"))).text
    done = await bot.handle(wechat_in(code))
    assert done.effects == ("bound",)
    assert "绑定成功" in done.text and "张三" in done.text
    assert "800 分" in (await bot.handle(wechat_in("积分"))).text
    async with sessions() as s:
        ident = (await s.exec(select(Identity).where(Identity.address == OPENID))).one()
        member = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
    assert (ident.member_id, ident.active) == (member.id, True)


async def test_bind_to_a_phone_without_member_reveals_nothing(bot, sessions, sms, store):
    await add_member(sessions, store)
    to_member = await bot.handle(wechat_in("BIND +8613800138000", openid="o-a"))
    to_nobody = await bot.handle(wechat_in("BIND +8613900139000", openid="o-b"))
    assert to_member.text.replace("138****8000", "X") == to_nobody.text.replace("139****9000", "X")
    assert [to for to, _ in sms.sent] == [PHONE]
    wrong = await bot.handle(wechat_in("000000", openid="o-b"))
    assert "验证码不对" in wrong.text


async def test_wrong_code_five_times_kills_it(bot, sessions, sms, store):
    await add_member(sessions, store)
    await bot.handle(wechat_in("绑定 13800138000"))
    code = sms.code_for(PHONE)
    wrong = "111111" if code != "111111" else "222222"
    for left in (4, 3, 2, 1):
        assert f"还可以试 {left} 次" in (await bot.handle(wechat_in(wrong))).text
    assert "已失效" in (await bot.handle(wechat_in(wrong))).text
    # The right code no longer works: it is just an unknown message now.
    late = await bot.handle(wechat_in(code))
    assert late.effects == () and "绑定+手机号" in late.text
    async with sessions() as s:
        assert (await s.exec(select(BindCode.status))).one() == "dead"
        ident = (await s.exec(select(Identity).where(Identity.address == OPENID))).one()
    assert ident.member_id is None


async def test_code_expires_after_ten_minutes(bot, sessions, sms, store, clock):
    await add_member(sessions, store)
    await bot.handle(wechat_in("绑定 13800138000"))
    clock.advance(minutes=10)
    reply = await bot.handle(wechat_in(sms.code_for(PHONE)))
    assert "失效" in reply.text and reply.effects == ()


async def test_bind_rate_limits(bot, sessions, sms, store, clock):
    await add_member(sessions, store)
    await add_member(sessions, store, phone=OTHER_PHONE, name="李四")
    for _ in range(3):
        assert "验证码短信已发出" in (await bot.handle(wechat_in("绑定 13800138000"))).text
    # Per openid: a fourth request within 10 minutes, even for another phone.
    assert "太频繁" in (await bot.handle(wechat_in("绑定 13900139000"))).text
    # Per phone: another openid asking for the same phone.
    assert "太频繁" in (await bot.handle(wechat_in("绑定 13800138000", openid="o-2"))).text
    assert len(sms.sent) == 3
    clock.advance(minutes=10, seconds=1)
    # Per phone and day: at most 10 per 24 hours, whoever asks.
    sent = 3
    for i in range(20):
        clock.advance(minutes=4)
        reply = await bot.handle(wechat_in("绑定 13800138000", openid=f"o-day-{i}"))
        if "太频繁" in reply.text:
            break
        sent += 1
    assert sent == 10
    assert len(sms.sent) == 10


async def test_only_the_newest_code_counts(bot, sessions, sms, store, clock):
    await add_member(sessions, store)
    await bot.handle(wechat_in("绑定 13800138000"))
    old = sms.code_for(PHONE)
    clock.advance(minutes=1)
    await bot.handle(wechat_in("绑定 13800138000"))
    new = sms.code_for(PHONE)
    if old != new:
        assert "验证码不对" in (await bot.handle(wechat_in(old))).text
    assert (await bot.handle(wechat_in(new))).effects == ("bound",)


async def test_bind_on_sms_is_explained(bot, sessions, sms, store):
    await add_member(sessions, store)
    assert "手机号就是会员身份" in await say(bot, "绑定 13800138000")
    assert sms.sent == []


async def test_bind_bad_phone(bot, sms):
    assert "手机号好像不对" in (await bot.handle(wechat_in("绑定 12345"))).text
    assert "绑定+手机号" in (await bot.handle(wechat_in("绑定"))).text
    assert sms.sent == []


async def test_bind_send_failure(bot, sessions, sms, store):
    await add_member(sessions, store)
    sms.fail = True
    reply = await bot.handle(wechat_in("绑定 13800138000"))
    assert reply.effects == ("bind_code_failed",) and "没能发出" in reply.text
    async with sessions() as s:
        assert (await s.exec(select(BindCode.status))).one() == "failed"


async def test_six_digits_without_a_pending_code_is_unknown(bot, sessions, store):
    await add_member(sessions, store)
    text = await say(bot, "123456")
    assert "还没看懂" in text


# --------------------------------------------------------------------------- events


async def test_subscribe_unsubscribe_and_welcome_back(bot, sessions, store):
    member = await add_member(sessions, store)
    welcome = await bot.handle(wechat_event("subscribe", openid="o-new"))
    assert welcome.effects == ("subscribed",) and "绑定" in welcome.text
    await _bind_directly(sessions, member)
    gone = await bot.handle(wechat_event("unsubscribe"))
    assert gone == Reply(None, ("unsubscribed",))
    async with sessions() as s:
        ident = (await s.exec(select(Identity).where(Identity.address == OPENID))).one()
    assert not ident.active
    back = await bot.handle(wechat_event("subscribe"))
    assert "张三，欢迎回来" in back.text
    async with sessions() as s:
        ident = (await s.exec(select(Identity).where(Identity.address == OPENID))).one()
    # a follow opens no customer-service window for proactive messages (docs/wechat.md)
    assert ident.active and ident.last_inbound_at != NOW


async def test_menu_clicks_are_keywords(bot, settings, sessions, store):
    member = await add_member(sessions, store)
    await buy(settings, sessions, amount="700", receipt="R1")
    await _bind_directly(sessions, member)
    assert "700 分" in (await bot.handle(wechat_event("CLICK", "MENU_POINTS"))).text
    assert "1. 300元代金券" in (await bot.handle(wechat_event("click", "MENU_REWARDS"))).text
    assert "还没有可用的券" in (await bot.handle(wechat_event("click", "MENU_VOUCHERS"))).text
    assert "会员卡" in (await bot.handle(wechat_event("click", "MENU_CARD"))).text
    assert "您可以回复" in (await bot.handle(wechat_event("click", "MENU_HELP"))).text


async def test_other_events_get_no_answer(bot):
    assert (await bot.handle(wechat_event("VIEW", "https://example.com"))).text is None


# --------------------------------------------------------------------------- help, fallback


@pytest.mark.parametrize(
    ("locale", "help_text", "fallback_text"),
    [("zh_CN", "您可以回复", "还没看懂"), ("en", "You can reply", "didn't catch that")],
)
async def test_help_and_fallback_in_both_locales(
    bot, sessions, store, locale, help_text, fallback_text
):
    await add_member(sessions, store, locale=locale)
    for word in ("帮助", "HELP", "info", "?", "？"):
        assert help_text in await say(bot, word)
    for text in ("你好", "what's up", "", "🙂"):
        assert fallback_text in await say(bot, text)


async def test_non_member_sms_gets_how_to_join(bot):
    for text in ("积分", "兑换 1", "券", "领卡", "帮助", "hello"):
        assert "还不是我们的会员" in await say(bot, text, sender=OTHER_PHONE)


async def test_brand_locale_en_for_non_members(make_settings, sessions, sms, clock):
    settings = make_settings(brand={"locale": "en"})
    bot = MemberBot(settings=settings, sessions=sessions, sms_sender=sms, clock=clock)
    assert "not a member yet" in await say(bot, "POINTS", sender=OTHER_PHONE)
    assert "BIND" in (await bot.handle(wechat_in("hi"))).text


@pytest.mark.parametrize(
    ("word", "marker"),
    [
        ("积分", "当前积分"), ("JF", "当前积分"), ("BALANCE", "当前积分"),
        ("兑换", "可兑换的礼品"), ("DH", "可兑换的礼品"), ("REDEEM", "可兑换的礼品"),
        ("券", "可用的券"), ("VOUCHERS", "可用的券"),
        ("领卡", "会员卡"), ("PICKUP", "会员卡"), ("寄卡", "会员卡"), ("MAIL", "会员卡"),
        ("确认", "没有需要确认"), ("CONFIRM", "没有需要确认"),
        ("订阅", "无需重复订阅"), ("UNSTOP", "无需重复订阅"),
        ("绑定", "手机号就是会员身份"), ("BIND", "手机号就是会员身份"),
    ],
)
async def test_each_keyword_reaches_its_handler(bot, sessions, store, word, marker):
    await add_member(sessions, store)
    assert marker in await say(bot, word)


async def test_last_inbound_is_recorded_for_wechat(bot, clock, sessions):
    await bot.handle(wechat_in("你好"))
    async with sessions() as s:
        ident = (await s.exec(select(Identity).where(Identity.address == OPENID))).one()
    assert (ident.member_id, ident.last_inbound_at) == (None, NOW)


# --------------------------------------------------------------------------- memberbot chat


async def test_run_chat_talks_through_the_same_bot(settings, sessions, store):
    await add_member(sessions, store)
    out = io.StringIO()
    status = await run_chat(
        settings, channel="sms", sender="13800138000", input_lines=["积分\n", "TD\n"], out=out
    )
    assert status == 0
    text = out.getvalue()
    assert "当前积分" in text and "已为您退订" in text
    assert (await member_row(sessions)).stopped


async def test_run_chat_wechat_bind_prints_the_console_sms(settings, sessions, store):
    await add_member(sessions, store)
    out = io.StringIO()
    await run_chat(
        settings, channel="wechat", sender="o-chat",
        input_lines=["/subscribe", "绑定 13800138000", "/quit", "积分"], out=out,
    )
    text = out.getvalue()
    assert "欢迎关注" in text
    assert "[sms to +86138****8000]" in text and "验证码" in text
    assert "当前积分" not in text  # /quit ended the chat


async def test_run_chat_rejects_a_bad_sms_sender(settings, capsys):
    assert await run_chat(settings, channel="sms", sender="abc", input_lines=[]) == 2
    assert "--from" in capsys.readouterr().err


# --------------------------------------------------------------------------- reply templates

_D = date(2026, 11, 28)
_REWARDS = [{"n": 1, "name": "R", "cost": 3000, "value": Decimal("300"), "affordable": True}]
_TIER_GOAL = {
    "name": "G", "pending": "P", "measure": "spend", "window": "half_year", "single": False,
    "threshold": Decimal("5000"), "missing": Decimal("1500.50"), "buy_by": _D,
}
SAMPLES: dict[str, dict] = {
    "points": dict(
        name="N", points=3200, tier="T", spend=Decimal("3200"),
        reward={"affordable": False, "name": "R", "missing": 800}, next_tier=_TIER_GOAL,
        expiring={"points": 100, "day": _D}, birthday_factor="2",
    ),
    "rewards_list": dict(rewards=_REWARDS, points=10),
    "rewards_none": dict(points=10),
    "redeem_bad_number": dict(number=9, rewards=_REWARDS, points=10),
    "redeem_short": dict(reward="R", cost=3000, points=10, missing=2990),
    "redeem_ask": dict(reward="R", value=Decimal(300), cost=3000, points=3200, after=200,
                       minutes=10),
    "redeem_done": dict(reward="R", code="ABCD", value=Decimal(300), expires=_D, points=200),
    "confirm_nothing": {},
    "confirm_expired": dict(kind="mail_card"),
    "cancelled": dict(kind="redeem"),
    "vouchers": dict(vouchers=[{"code": "ABCD", "value": Decimal(300), "expires": _D}]),
    "vouchers_none": dict(points=10, cheapest=3000),
    "card_none": dict(eligible="G", store="S", store_phone="021-1234"),
    "card_in_progress": dict(tier="G", status="entered"),
    "card_mailed": dict(tier="G", status="mailed", address="A****"),
    "card_picked_up": dict(tier="G", status="picked_up"),
    "card_rejected": dict(tier="G", status="rejected", store=None, store_phone=None),
    "card_ask_day": dict(tier="G", planned=_D, store="S", store_phone=None),
    "card_bad_day": dict(tier="G", text="x"),
    "card_past_day": dict(tier="G", day=_D, today=_D),
    "card_far_day": dict(tier="G", day=_D, max_days=60),
    "card_day_set": dict(tier="G", day=_D, store="S", store_phone="1"),
    "card_no_address": dict(tier="G", store="S", store_phone="1"),
    "card_mail_ask": dict(tier="G", address="A****", minutes=10),
    "card_mail_done": dict(tier="G", address="A****"),
    "stop_done": dict(member=True),
    "stop_already": {},
    "resume_done": {},
    "resume_already": {},
    "help": dict(wechat=True, member=True, store="S", store_phone="1"),
    "fallback": dict(name="N", wechat=False),
    "unbound": {},
    "not_member": {},
    "bind_sms_channel": {},
    "bind_how": {},
    "bind_bad_phone": {},
    "bind_already": dict(name="N", phone=PHONE),
    "bind_rate_limited": dict(minutes=10),
    "bind_code_sms": dict(code="123456", minutes=10),
    "bind_sent": dict(phone=PHONE, minutes=10),
    "bind_code_expired": dict(minutes=10),
    "bind_done": dict(name="N", phone=PHONE),
    "bind_code_dead": {},
    "bind_code_wrong": dict(left=3),
    "bind_send_failed": {},
    "bind_conflict": {},
    "bind_waiting": dict(phone=PHONE),
    "resume_unbound": {},
    "welcome": {},
    "welcome_back": dict(name="N"),
}


def test_every_reply_exists_in_both_locales():
    from scheduler.text import template_names

    assert template_names("zh_CN") == template_names("en") == sorted(SAMPLES)


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_reply_renders(name, locale):
    from scheduler.text import render

    text = render(name, locale, brand="B", **SAMPLES[name])
    assert text and "\n\n" not in text
    assert PHONE not in text  # phone numbers are always masked
    if locale == "en":
        assert not re.search(r"[\u4e00-\u9fff]", text), text
