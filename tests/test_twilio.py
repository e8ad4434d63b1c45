"""The Twilio webhooks end to end (`create_app(settings)` with a fake conversation, requests
signed by twilio's RequestValidator), delivery receipts, and the SMS senders against a
local fake of Twilio's REST API."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

import pytest

from bot.app import create_app
from bot.appkeys import INBOUND_LOG, SMS_SENDER
from bot.channels.twilio_sms import SMS_OPTIONS, SmsOptions
from bot.conversation import Inbound, Reply
from bot.sms_sender import TwilioSmsSender, open_sms_sender
from models.db import transaction
from models.outbox.receipts import can_move, get_receipt, record_receipt
from models.settings.sections import SmsSettings
from scheduler.send.providers import ConsoleSmsSender, SentSms, SmsSendError
from tests.fakes import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, FakeTwilioApi
from tests.payloads import TWILIO_NUMBER, sms, sms_status, twilio_signature

PUBLIC_URL = "https://bot.example.com"
MEMBER = "+8613800138000"


class FakeConversation:
    def __init__(self, answer: str | None = "ok"):
        self.calls: list[Inbound] = []
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.answer = answer

    async def handle(self, inbound: Inbound) -> Reply:
        self.calls.append(inbound)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return Reply(None if self.answer is None else f"{self.answer}:{inbound.text}")


@pytest.fixture
def conversation():
    return FakeConversation()


@pytest.fixture
def console():
    return ConsoleSmsSender(out=io.StringIO())


@pytest.fixture
def make_client(make_settings, aiohttp_client, conversation, console):
    async def build(*, public_url: str = PUBLIC_URL, auth_token: str = TWILIO_AUTH_TOKEN, **opts):
        settings = make_settings(
            server={"public_url": public_url},
            sms={"provider": "console", "twilio": {"auth_token": auth_token}},
        )
        app = create_app(settings, conversation=conversation)
        app[SMS_SENDER] = console
        app[SMS_OPTIONS] = SmsOptions(**opts)
        return await aiohttp_client(app)

    return build


async def post_signed(client, path: str, form: dict, *, url: str | None = None, signature=None):
    url = url or PUBLIC_URL + path
    headers = {"X-Twilio-Signature": signature or twilio_signature(url, form)}
    return await client.post(path, data=form, headers=headers)


# --------------------------------------------------------------------------- inbound SMS


async def test_a_signed_sms_is_answered_with_twiml(make_client, conversation):
    client = await make_client()
    form = sms(MEMBER, "积分", sid="SM" + "a" * 32)
    resp = await post_signed(client, "/sms/twilio", form)
    assert resp.status == 200
    assert resp.content_type == "text/xml"
    assert await resp.text() == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok:积分</Message></Response>'
    )
    [inbound] = conversation.calls
    assert (inbound.channel, inbound.sender, inbound.text, inbound.message_id) == (
        "sms",
        MEMBER,
        "积分",
        "SM" + "a" * 32,
    )
    assert inbound.at is not None and inbound.at.tzinfo is not None


async def test_no_answer_is_an_empty_response(make_client, conversation):
    conversation.answer = None
    client = await make_client()
    resp = await post_signed(client, "/sms/twilio", sms(MEMBER, "STOP"))
    assert await resp.text() == '<?xml version="1.0" encoding="UTF-8"?><Response />'


async def test_an_answer_is_escaped_in_twiml(make_client, conversation):
    client = await make_client()
    resp = await post_signed(client, "/sms/twilio", sms(MEMBER, "<b>&"))
    assert "<Message>ok:&lt;b&gt;&amp;</Message>" in await resp.text()


@pytest.mark.parametrize(
    ("raw", "sender"),
    [("+86 138 0013 8000", MEMBER), ("13800138000", MEMBER), ("12345", "12345")],
)
async def test_the_sender_is_normalised_or_kept_raw(make_client, conversation, raw, sender):
    client = await make_client()
    resp = await post_signed(client, "/sms/twilio", sms(raw, "HELP"))
    assert resp.status == 200
    assert conversation.calls[0].sender == sender


@pytest.mark.parametrize("signature", ["bad", None])
async def test_a_bad_or_missing_signature_is_403(make_client, conversation, signature):
    client = await make_client()
    form = sms(MEMBER, "积分")
    headers = {} if signature is None else {"X-Twilio-Signature": "bm90IGl0"}
    resp = await client.post("/sms/twilio", data=form, headers=headers)
    assert resp.status == 403
    assert conversation.calls == []


async def test_a_changed_field_breaks_the_signature(make_client, conversation):
    client = await make_client()
    form = sms(MEMBER, "积分")
    signature = twilio_signature(PUBLIC_URL + "/sms/twilio", form)
    resp = await post_signed(client, "/sms/twilio", {**form, "Body": "兑换 1"}, signature=signature)
    assert resp.status == 403


async def test_no_auth_token_configured_refuses_everything(make_client, conversation):
    client = await make_client(auth_token="")
    form = sms(MEMBER, "积分")
    sig = twilio_signature(PUBLIC_URL + "/sms/twilio", form, auth_token="")
    resp = await post_signed(client, "/sms/twilio", form, signature=sig)
    assert resp.status == 403


async def test_the_public_url_is_signed_not_the_one_behind_the_proxy(make_client, conversation):
    client = await make_client(public_url="https://bot.example.com")
    form = sms(MEMBER, "积分")
    local_url = str(client.make_url("/sms/twilio"))
    assert not local_url.startswith(PUBLIC_URL)
    as_seen_locally = await post_signed(client, "/sms/twilio", form, url=local_url)
    assert as_seen_locally.status == 403
    as_twilio_called = await post_signed(client, "/sms/twilio", form)
    assert as_twilio_called.status == 200


async def test_a_public_url_with_a_path_prefix_and_a_query(make_client, conversation):
    client = await make_client(public_url="https://example.com/bot")
    form = sms(MEMBER, "积分")
    url = "https://example.com/bot/sms/twilio?store=S001"
    headers = {"X-Twilio-Signature": twilio_signature(url, form)}
    resp = await client.post("/sms/twilio?store=S001", data=form, headers=headers)
    assert resp.status == 200


async def test_a_duplicate_message_sid_has_one_effect(make_client, conversation):
    client = await make_client()
    form = sms(MEMBER, "兑换 1")
    first = await post_signed(client, "/sms/twilio", form)
    second = await post_signed(client, "/sms/twilio", form)
    assert await first.text() == await second.text()
    assert "ok:兑换 1" in await second.text()
    assert len(conversation.calls) == 1


async def test_a_slow_answer_is_texted_when_ready(make_client, conversation, console):
    client = await make_client(reply_deadline=0.2)
    conversation.gate = asyncio.Event()
    resp = await post_signed(client, "/sms/twilio", sms(MEMBER, "积分"))
    assert await resp.text() == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    assert console.sent == []
    conversation.gate.set()
    await client.app[INBOUND_LOG].drain(within=5)
    [sent] = console.sent
    assert (sent.to, sent.body) == (MEMBER, "ok:积分")
    assert "+86138****8000" in console.out.getvalue()


# --------------------------------------------------------------------------- status callbacks


async def test_a_status_callback_is_recorded(make_client, sessions):
    client = await make_client()
    resp = await post_signed(
        client, "/sms/twilio/status", sms_status("SM01", "undelivered", error_code="30003")
    )
    assert resp.status == 204
    async with sessions() as session:
        receipt = await get_receipt(session, provider_id="SM01")
    assert (receipt.status, receipt.error_code) == ("undelivered", "30003")


async def test_a_status_never_moves_backwards(make_client, sessions):
    client = await make_client()
    for status in ["sent", "delivered", "sent", "queued"]:
        resp = await post_signed(client, "/sms/twilio/status", sms_status("SM02", status))
        assert resp.status == 204
    async with sessions() as session:
        assert (await get_receipt(session, provider_id="SM02")).status == "delivered"


async def test_a_status_callback_with_an_over_long_sid_is_refused_not_truncated(
    make_client, sessions
):
    """Found by the hostile run (tests/reliability): the callback cut a long MessageSid to
    its first 64 characters and recorded a receipt for that other id — which may be a
    real message's. It is refused like on /sms/twilio, and nothing is recorded."""
    client = await make_client()
    sid = "SM" + "1" * 80
    resp = await post_signed(client, "/sms/twilio/status", sms_status(sid, "delivered"))
    assert resp.status == 400
    async with sessions() as session:
        assert await get_receipt(session, provider_id=sid[:64]) is None
        assert await get_receipt(session, provider_id=sid) is None


async def test_a_status_callback_with_a_bad_signature_is_403(make_client, sessions):
    client = await make_client()
    form = sms_status("SM03", "delivered")
    resp = await post_signed(client, "/sms/twilio/status", form, signature="AAAA")
    assert resp.status == 403
    async with sessions() as session:
        assert await get_receipt(session, provider_id="SM03") is None


@pytest.mark.parametrize(
    ("current", "new", "moves"),
    [
        ("queued", "sending", True),
        ("queued", "delivered", True),
        ("sent", "queued", False),
        ("delivered", "sent", False),
        ("delivered", "failed", False),
        ("failed", "delivered", False),
        ("undelivered", "read", False),
        ("delivered", "read", True),
        ("sent", "undelivered", True),
        ("sent", "bogus", False),
    ],
)
def test_state_order(current, new, moves):
    assert can_move(current, new) is moves


async def test_receipts_arriving_out_of_order_keep_the_latest_state(sessions):
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    async with transaction(sessions) as s:
        assert await record_receipt(
            s, provider_id="SM9", status="delivered", error_code=None, at=at
        )
        assert not await record_receipt(s, provider_id="SM9", status="sent", error_code=None, at=at)
        assert not await record_receipt(
            s, provider_id="SM9", status="queued", error_code=None, at=at
        )
        assert not await record_receipt(
            s, provider_id="SM9", status="weird", error_code=None, at=at
        )
    async with sessions() as s:
        assert (await get_receipt(s, provider_id="SM9")).status == "delivered"


# --------------------------------------------------------------------------- senders


@pytest.fixture
async def fake_twilio(aiohttp_server):
    fake = FakeTwilioApi()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


def twilio_settings(fake: FakeTwilioApi, **overrides) -> SmsSettings:
    return SmsSettings(
        provider="twilio",
        twilio={
            "account_sid": TWILIO_ACCOUNT_SID,
            "auth_token": TWILIO_AUTH_TOKEN,
            "from_number": TWILIO_NUMBER,
            "api_base_url": fake.base_url,
            **overrides,
        },
    )


async def test_the_twilio_sender_posts_to_the_messages_api(fake_twilio):
    async with open_sms_sender(twilio_settings(fake_twilio)) as sender:
        assert isinstance(sender, TwilioSmsSender)
        sent = await sender.send(
            MEMBER, "您的验证码 123456", status_callback=PUBLIC_URL + "/sms/twilio/status"
        )
    [message] = fake_twilio.messages
    assert sent == SentSms(provider_id=message["Sid"], status="queued")
    assert message["To"] == MEMBER
    assert message["From"] == TWILIO_NUMBER
    assert message["Body"] == "您的验证码 123456"
    assert message["StatusCallback"] == PUBLIC_URL + "/sms/twilio/status"


async def test_the_twilio_sender_can_use_a_messaging_service(fake_twilio):
    settings = twilio_settings(fake_twilio, from_number="", messaging_service_sid="MG" + "1" * 32)
    async with open_sms_sender(settings) as sender:
        await sender.send(MEMBER, "hi")
    [message] = fake_twilio.messages
    assert message["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in message and "StatusCallback" not in message


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (500, "retry"),
        (429, "retry"),
        (("code", 21610), "stopped"),
        (("code", 21211), "bad_number"),
        (("code", 21614), "bad_number"),
        (("code", 21602), "rejected"),
    ],
)
async def test_twilio_refusals_say_what_to_do(fake_twilio, failure, kind):
    fake_twilio.failures.append(failure)
    async with open_sms_sender(twilio_settings(fake_twilio)) as sender:
        with pytest.raises(SmsSendError) as caught:
            await sender.send(MEMBER, "hi")
    assert caught.value.kind == kind
    assert caught.value.retryable is (kind == "retry")
    assert fake_twilio.messages == []


async def test_wrong_credentials_are_refused_for_good(fake_twilio):
    settings = twilio_settings(fake_twilio, auth_token="wrong-token")
    async with open_sms_sender(settings) as sender:
        with pytest.raises(SmsSendError) as caught:
            await sender.send(MEMBER, "hi")
    assert caught.value.http_status == 401 and not caught.value.retryable


async def test_the_app_opens_the_configured_twilio_sender(
    make_settings, aiohttp_client, fake_twilio
):
    settings = make_settings(
        sms={
            "provider": "twilio",
            "twilio": {
                "account_sid": TWILIO_ACCOUNT_SID,
                "auth_token": TWILIO_AUTH_TOKEN,
                "from_number": TWILIO_NUMBER,
                "api_base_url": fake_twilio.base_url,
            },
        }
    )
    client = await aiohttp_client(create_app(settings, conversation=FakeConversation()))
    sender = client.app[SMS_SENDER]
    assert isinstance(sender, TwilioSmsSender)
    await sender.send(MEMBER, "绑定验证码 654321")
    assert fake_twilio.messages[0]["Body"] == "绑定验证码 654321"


async def test_the_console_sender_prints_a_masked_line_and_remembers(capsys):
    async with open_sms_sender(SmsSettings(provider="console")) as sender:
        sent = await sender.send(MEMBER, "验证码 123456")
    assert isinstance(sender, ConsoleSmsSender)
    assert sent.status == "sent"
    assert [(m.to, m.body) for m in sender.sent] == [(MEMBER, "验证码 123456")]
    out = capsys.readouterr().out
    assert "+86138****8000" in out and MEMBER not in out and "验证码 123456" in out
