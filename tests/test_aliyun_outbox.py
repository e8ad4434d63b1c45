"""The outbox through Aliyun: proactive messages go as approved templates (SendSms through
the official SDK to the fake), a message whose template has no code is suppressed, the
provider's refusals sort like Twilio's, and delivery reports move the messages."""

from __future__ import annotations

import io
from contextlib import AsyncExitStack

import pytest
from sqlmodel import select

from bot.app import create_app
from bot.sms_sender import open_sms_sender
from models.outbox.states import DELIVERED, FAILED, SENT, SUPPRESSED, UNDELIVERABLE
from models.tables.members import Identity, Member
from scheduler.render import render_message
from scheduler.send.sender import Sender
from scheduler.send.transports import Transports
from tests.fake_aliyun import report
from tests.test_aliyun_sms import NATIONAL, REPORT, aliyun_config, all_codes
from tests.test_outbox import PHONE, T0, add_member, add_message, load

PUBLIC_URL = "https://bot.example.com"


def care_text(**extra) -> str:
    ctx = {"member_name": "张三", "store_name": "静安店", "assistant_name": "小李", **extra}
    return render_message("care_d30", "zh_CN", **ctx)


@pytest.fixture
async def fake_aliyun(aiohttp_server):
    from tests.fake_aliyun import FakeAliyunSms

    fake = FakeAliyunSms()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def make_sender(make_settings, sessions, fake_aliyun):
    async with AsyncExitStack() as stack:

        async def build(**aliyun) -> Sender:
            settings = make_settings(
                server={"public_url": PUBLIC_URL},
                sms=aliyun_config(fake_aliyun, **aliyun),
                outbox={"rate_sms": 0},
            )
            sms = await stack.enter_async_context(
                open_sms_sender(settings.sms, request_timeout=2.0)
            )
            transports = Transports.build(sms_sender=sms, public_url=PUBLIC_URL, out=io.StringIO())
            return Sender(
                sessions=sessions, settings=settings, transports=transports, clock=lambda: T0
            )

        yield build


async def queue(sessions, text: str | None = None) -> tuple[int, int]:
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id, via="aliyun", text=text or care_text())
    return member_id, mid


async def test_a_due_message_goes_as_its_approved_template(sessions, make_sender, fake_aliyun):
    _, mid = await queue(sessions)
    sender = await make_sender()
    result = await sender.drain_once(T0)
    assert (result.claimed, result.sent) == (1, 1)
    [sent] = fake_aliyun.sent
    assert sent["phone"] == NATIONAL and sent["template_code"] == "SMS_CARE_D30"
    assert sent["params"] == {"member_name": "张三", "signature": "静安店 小李"}
    msg = await load(sessions, mid)
    assert (msg.status, msg.via, msg.provider_id) == (SENT, "aliyun", sent["biz_id"])


async def test_a_kind_without_a_template_code_is_suppressed_naming_it(
    sessions, make_sender, fake_aliyun
):
    _, mid = await queue(sessions)
    codes = {k: v for k, v in all_codes().items() if k != "care_d30"}
    sender = await make_sender(templates=codes)
    await sender.drain_once(T0)
    msg = await load(sessions, mid)
    assert msg.status == SUPPRESSED
    assert msg.reason == "no aliyun template: sms.aliyun.templates.care_d30"
    assert fake_aliyun.sent == []


async def test_a_variable_over_the_limit_is_not_sent(sessions, make_sender, fake_aliyun):
    _, mid = await queue(sessions, care_text(member_name="张" * 40))
    sender = await make_sender(variable_max_length=35)
    await sender.drain_once(T0)
    msg = await load(sessions, mid)
    assert msg.status == SUPPRESSED and "variable member_name has 40 characters" in msg.reason
    assert fake_aliyun.sent == []


@pytest.mark.parametrize(
    ("failure", "status", "reason"),
    [
        (500, FAILED, "aliyun ServiceUnavailable; provider down"),
        (("code", "isv.BUSINESS_LIMIT_CONTROL"), FAILED,
         "aliyun isv.BUSINESS_LIMIT_CONTROL: the provider's per-number limit"),
        (("code", "isv.SMS_TEMPLATE_ILLEGAL"), FAILED,
         "aliyun isv.SMS_TEMPLATE_ILLEGAL: check sms.aliyun and the console"),
        (("code", "isv.MOBILE_NUMBER_ILLEGAL"), UNDELIVERABLE,
         "aliyun isv.MOBILE_NUMBER_ILLEGAL: not a valid mobile number"),
        (("code", "isv.BLACK_KEY_CONTROL_LIMIT"), UNDELIVERABLE,
         "aliyun isv.BLACK_KEY_CONTROL_LIMIT: refused"),
    ],
)  # fmt: skip
async def test_refusals_sort_like_twilios(
    sessions, make_sender, fake_aliyun, failure, status, reason
):
    member_id, mid = await queue(sessions)
    fake_aliyun.failures.append(failure)
    sender = await make_sender()
    await sender.drain_once(T0)
    msg = await load(sessions, mid)
    assert (msg.status, msg.reason) == (status, reason)
    if isinstance(failure, tuple):  # the provider's code, whole
        assert msg.error_code == failure[1]
    async with sessions() as s:
        bad = (await s.exec(select(Identity).where(Identity.address == PHONE))).first()
    assert (bad is not None and bad.bad) == (failure == ("code", "isv.MOBILE_NUMBER_ILLEGAL"))


async def test_wrong_keys_wait_for_the_operator(sessions, make_sender, fake_aliyun):
    _, mid = await queue(sessions)
    sender = await make_sender(access_key_id="LTAI-wrong")
    await sender.drain_once(T0)
    msg = await load(sessions, mid)
    assert msg.status == FAILED and "check sms.aliyun" in msg.reason


@pytest.fixture
async def app_client(aiohttp_client, make_settings, fake_aliyun):
    settings = make_settings(sms=aliyun_config(fake_aliyun))
    return await aiohttp_client(create_app(settings))


async def send_one(sessions, make_sender, fake_aliyun) -> tuple[int, int, str]:
    member_id, mid = await queue(sessions)
    await (await make_sender()).drain_once(T0)
    return member_id, mid, fake_aliyun.sent[-1]["biz_id"]


async def post_report(client, items) -> None:
    resp = await client.post(REPORT, json=items)
    assert resp.status == 200 and await resp.json() == {"code": 0, "msg": "接收成功"}


async def test_a_delivery_report_marks_the_message_delivered(
    sessions, make_sender, fake_aliyun, app_client
):
    _, mid, biz_id = await send_one(sessions, make_sender, fake_aliyun)
    await post_report(app_client, [report(biz_id, NATIONAL)])
    await post_report(app_client, [report(biz_id, NATIONAL)])  # re-pushed: no change
    assert (await load(sessions, mid)).status == DELIVERED


@pytest.mark.parametrize(
    ("code", "stopped", "bad"),
    [("MOBILE_IN_BLACK", True, False), ("INVALID_NUMBER", False, True),
     ("MK:0005", False, False)],
)  # fmt: skip
async def test_a_failed_report_keeps_the_code_and_acts_on_it(
    sessions, make_sender, fake_aliyun, app_client, code, stopped, bad
):
    member_id, mid, biz_id = await send_one(sessions, make_sender, fake_aliyun)
    await post_report(app_client, [report(biz_id, NATIONAL, success=False, err_code=code)])
    msg = await load(sessions, mid)
    assert (msg.status, msg.error_code) == (UNDELIVERABLE, code)
    assert msg.reason == f"aliyun failed ({code})"
    async with sessions() as s:
        member = await s.get(Member, member_id)
        identity = (await s.exec(select(Identity).where(Identity.address == PHONE))).first()
    assert member.stopped is stopped
    assert (identity is not None and identity.bad) is bad
