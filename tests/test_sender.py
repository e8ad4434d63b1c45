"""The outbox sender (scheduler/send/sender.py) against local fake Twilio and WeChat servers
(tests/fakes.py): sending, retries with backoff, refusals for good, re-checks at send
time, re-routing, the rate limit, status callbacks racing the send call, crashes
mid-send and two senders sharing one outbox."""

from __future__ import annotations

import asyncio
import io
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlmodel import select

from bot.app import create_app
from bot.sms_sender import open_sms_sender
from bot.wechat_api import WeChatApi
from models import consent
from models.db import transaction
from models.outbox.receipts import get_receipt
from models.outbox.states import (
    DELIVERED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    SUPPRESSED,
    UNDELIVERABLE,
)
from models.tables.members import Identity, Member
from scheduler.send.ratelimit import RateLimiter
from scheduler.send.send_retry import backoff
from scheduler.send.sender import Sender, drain_until_idle
from scheduler.send.transports import (
    ConsoleTransport,
    SmsTransport,
    Transports,
)
from tests.fakes import (
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    WECHAT_APP_ID,
    WECHAT_APP_SECRET,
    FakeTwilioApi,
    FakeWeChatApi,
)
from tests.payloads import TWILIO_NUMBER, sms_status, twilio_signature
from tests.test_outbox import (
    PHONE,
    T0,
    add_member,
    add_message,
    history,
    load,
    set_status,
)

PUBLIC_URL = "https://bot.example.com"
STATUS_URL = PUBLIC_URL + "/sms/twilio/status"
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


@pytest.fixture
async def fake_twilio(aiohttp_server):
    fake = FakeTwilioApi()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def fake_wechat(aiohttp_server):
    fake = FakeWeChatApi()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


def twilio_config(fake: FakeTwilioApi) -> dict:
    return {
        "provider": "twilio",
        "twilio": {
            "account_sid": TWILIO_ACCOUNT_SID,
            "auth_token": TWILIO_AUTH_TOKEN,
            "from_number": TWILIO_NUMBER,
            "api_base_url": fake.base_url,
        },
    }


@pytest.fixture
async def make_sender(make_settings, sessions, fake_twilio):
    """`await make_sender(outbox={...}, wechat=fake_wechat, templates={...})`: a Sender on
    the test database sending SMS to the fake Twilio (no rate limit unless asked)."""
    async with AsyncExitStack() as stack:

        async def build(
            *,
            outbox: dict | None = None,
            wechat: FakeWeChatApi | None = None,
            templates: dict | None = None,
            limiters: dict | None = None,
            call_timeout: float = 2.0,
            wrap=None,
        ) -> Sender:
            settings = make_settings(
                server={"public_url": PUBLIC_URL},
                sms=twilio_config(fake_twilio),
                outbox={"rate_sms": 0, "rate_wechat": 0, **(outbox or {})},
            )
            sms = await stack.enter_async_context(
                open_sms_sender(settings.sms, request_timeout=call_timeout)
            )
            api = None
            if wechat is not None:
                http = await stack.enter_async_context(aiohttp.ClientSession())
                api = WeChatApi(
                    http, base_url=wechat.base_url, app_id=WECHAT_APP_ID,
                    app_secret=WECHAT_APP_SECRET,
                )  # fmt: skip
            transports = Transports.build(
                sms_sender=sms, public_url=PUBLIC_URL, wechat_api=api, templates=templates,
                out=io.StringIO(),
            )  # fmt: skip
            if wrap is not None:
                transports.sms = wrap(transports.sms)
            return Sender(
                sessions=sessions, settings=settings, transports=transports,
                clock=lambda: T0, limiters=limiters,
            )  # fmt: skip

        yield build


async def wechat_identity(
    sessions, member_id: int, *, wrote_at: datetime | None = T0 - timedelta(hours=1)
) -> None:
    """The member's WeChat identity (OPENID); by default the member wrote an hour before
    T0, so the customer-service window is open at T0."""
    async with transaction(sessions) as s:
        s.add(Identity(member_id=member_id, channel="wechat", address=OPENID,
                       last_inbound_at=wrote_at))  # fmt: skip


async def post_status(client, form: dict) -> int:
    headers = {"X-Twilio-Signature": twilio_signature(STATUS_URL, form)}
    resp = await client.post("/sms/twilio/status", data=form, headers=headers)
    return resp.status


# ----------------------------------------------------------------------------- Twilio


async def test_a_due_message_goes_to_twilio_with_the_status_callback(
    sessions, make_sender, fake_twilio
):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id, text="天冷了，注意保暖。回复TD退订")
    sender = await make_sender()
    result = await sender.drain_once(T0)
    assert (result.claimed, result.sent) == (1, 1)
    [sent] = fake_twilio.messages
    assert sent["To"] == PHONE and sent["From"] == TWILIO_NUMBER
    assert sent["Body"] == "天冷了，注意保暖。回复TD退订"
    assert sent["StatusCallback"] == STATUS_URL
    msg = await load(sessions, mid)
    assert (msg.status, msg.provider_id, msg.via, msg.attempts) == (SENT, sent["Sid"], "twilio", 1)
    assert await history(sessions, mid) == [
        ("planned", "queued", None), ("queued", "sending", None), ("sending", "sent", None),
    ]  # fmt: skip
    async with sessions() as s:
        assert (await get_receipt(s, provider_id=sent["Sid"])).status == "queued"
    assert (await sender.drain_once(T0 + timedelta(hours=1))).claimed == 0


@pytest.mark.parametrize("failure", [500, 503, 429, "timeout"])
async def test_a_retryable_failure_is_retried_after_the_backoff(
    sessions, make_sender, fake_twilio, failure
):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    sender = await make_sender(call_timeout=0.2)
    if failure == "timeout":
        fake_twilio.hangs = 1  # no answer within the client's 0.2 s
    else:
        fake_twilio.failures.append(failure)

    first = await sender.drain_once(T0)
    fake_twilio.release()
    assert (first.claimed, first.failed, first.sent) == (1, 1, 0)
    msg = await load(sessions, mid)
    assert (msg.status, msg.attempts, msg.next_attempt_at) == (FAILED, 1, T0 + timedelta(seconds=1))
    assert msg.reason == ("twilio unreachable: TimeoutError" if failure == "timeout"
                          else f"twilio HTTP {failure}") + "; provider down"  # fmt: skip
    assert fake_twilio.messages == []

    assert (await sender.drain_once(T0 + timedelta(milliseconds=999))).claimed == 0
    second = await sender.drain_once(T0 + timedelta(seconds=1))
    assert second.sent == 1
    msg = await load(sessions, mid)
    assert (msg.status, msg.attempts, msg.next_attempt_at, msg.reason) == (SENT, 2, None, None)
    assert len(fake_twilio.messages) == 1
    assert [e[:2] for e in await history(sessions, mid)] == [
        ("planned", "queued"), ("queued", "sending"), ("sending", "failed"),
        ("failed", "sending"), ("sending", "sent"),
    ]  # fmt: skip


def test_backoff_doubles_from_retry_backoff_up_to_300_seconds():
    assert [backoff(n, 1) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert backoff(1, 2.5) == 2.5 and backoff(3, 2.5) == 10


async def test_while_the_provider_is_down_the_other_messages_wait_without_using_attempts(
    sessions, make_sender, fake_twilio
):
    """One message probes the failing provider; the rest are held, not failed, and all go
    out once it is back — nothing is lost however long the outage."""
    member_id = await add_member(sessions)
    ids = [await add_message(sessions, member_id=member_id, occasion=f"o{i}") for i in range(5)]
    sender = await make_sender(outbox={"concurrency": 1})
    fake_twilio.failures.extend([503] * 3)
    first = await sender.drain_once(T0)
    assert (first.failed, first.deferred) == (1, 4)
    held = await load(sessions, ids[1])
    assert (held.status, held.attempts, held.send_after) == (QUEUED, 0, T0 + timedelta(seconds=1))
    assert held.reason == "held: sms failing"
    # the channel stays paused until its backoff is over: nothing is claimed meanwhile
    assert (await sender.drain_once(T0 + timedelta(milliseconds=500))).claimed == 0
    second = await sender.drain_once(T0 + timedelta(seconds=1))
    assert (second.failed, second.deferred) == (1, 4)
    third = await sender.drain_once(T0 + timedelta(seconds=3))
    assert (third.failed, third.deferred) == (1, 4)
    total = await drain_until_idle(sender, now=T0 + timedelta(seconds=7))
    assert total.sent == 5
    assert len(fake_twilio.messages) == 5
    # the first failure cost ids[0] one attempt; the probes after it cost none
    assert sorted([(await load(sessions, i)).attempts for i in ids]) == [1, 1, 1, 1, 2]


async def test_21610_makes_the_message_undeliverable_and_stops_the_member(
    sessions, make_sender, fake_twilio
):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id, occasion="a")
    later = await add_message(
        sessions, member_id=member_id, occasion="b", send_after=T0 + timedelta(hours=1)
    )
    sender = await make_sender()
    fake_twilio.failures.append(("code", 21610))
    assert (await sender.drain_once(T0)).undeliverable == 1
    msg = await load(sessions, mid)
    assert (msg.status, msg.error_code, msg.next_attempt_at) == (UNDELIVERABLE, "21610", None)
    assert "21610" in msg.reason
    async with sessions() as s:
        assert (await s.get(Member, member_id)).stopped
        [event] = await consent.history(s, member_id=member_id)
    assert (event.action, event.channel, event.source, event.at) == (
        "stop", "provider", "twilio 21610", T0
    )  # fmt: skip
    # the member's next message is suppressed at send time, Twilio is not asked again
    result = await sender.drain_once(T0 + timedelta(hours=1))
    assert result.suppressed == 1
    assert (await load(sessions, later)).reason == "stopped"
    assert len(fake_twilio.refused) == 1


@pytest.mark.parametrize("code", [21211, 21614])
async def test_a_bad_number_is_marked_and_never_retried(sessions, make_sender, fake_twilio, code):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id, occasion="a")
    later = await add_message(
        sessions, member_id=member_id, occasion="b", send_after=T0 + timedelta(hours=1)
    )
    sender = await make_sender()
    fake_twilio.failures.append(("code", code))
    assert (await sender.drain_once(T0)).undeliverable == 1
    msg = await load(sessions, mid)
    assert (msg.status, msg.error_code, msg.next_attempt_at) == (UNDELIVERABLE, str(code), None)
    async with sessions() as s:
        [ident] = (await s.exec(select(Identity))).all()
        assert not (await s.get(Member, member_id)).stopped
    assert (ident.address, ident.bad, ident.bad_reason) == (PHONE, True, f"twilio {code}")
    assert (await sender.drain_once(T0 + timedelta(days=1))).suppressed == 1
    assert (await load(sessions, later)).reason == "bad_number"
    assert len(fake_twilio.refused) == 1 and fake_twilio.messages == []


async def test_any_other_refusal_is_undeliverable_and_not_retried(
    sessions, make_sender, fake_twilio
):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    sender = await make_sender()
    fake_twilio.failures.append(("code", 21602))
    assert (await sender.drain_once(T0)).undeliverable == 1
    assert (await load(sessions, mid)).reason == "twilio 21602: refused"
    assert (await sender.drain_once(T0 + timedelta(days=1))).claimed == 0


# ----------------------------------------------------------------------------- status callbacks


async def test_a_status_callback_before_the_send_returned_is_not_lost(
    sessions, make_settings, make_sender, fake_twilio, aiohttp_client
):
    settings = make_settings(server={"public_url": PUBLIC_URL}, sms=twilio_config(fake_twilio))
    client = await aiohttp_client(create_app(settings))
    answers: list[int] = []

    async def deliver_first(accepted: dict) -> None:
        answers.append(await post_status(client, sms_status(accepted["Sid"], "delivered")))

    fake_twilio.before_answer = deliver_first
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    sender = await make_sender()
    assert (await sender.drain_once(T0)).sent == 1
    assert answers == [204]
    msg = await load(sessions, mid)
    assert msg.status == DELIVERED
    assert [e[:2] for e in await history(sessions, mid)][-2:] == [
        ("sending", "sent"), ("sent", "delivered")
    ]  # fmt: skip

    # a late "sent" (or a repeated "delivered") never moves it back
    assert await post_status(client, sms_status(msg.provider_id, "sent")) == 204
    assert await post_status(client, sms_status(msg.provider_id, "delivered")) == 204
    assert (await load(sessions, mid)).status == DELIVERED
    assert len(await history(sessions, mid)) == 4


async def test_status_callbacks_move_a_sent_message_forward(
    sessions, make_settings, make_sender, fake_twilio, aiohttp_client
):
    settings = make_settings(server={"public_url": PUBLIC_URL}, sms=twilio_config(fake_twilio))
    client = await aiohttp_client(create_app(settings))
    member_id = await add_member(sessions)
    ok = await add_message(sessions, member_id=member_id, occasion="a")
    lost = await add_message(sessions, member_id=member_id, occasion="b")
    sender = await make_sender()
    assert (await sender.drain_once(T0)).sent == 2
    sid_ok, sid_lost = [(await load(sessions, m)).provider_id for m in (ok, lost)]
    assert await post_status(client, sms_status(sid_ok, "sent")) == 204
    assert (await load(sessions, ok)).status == SENT
    assert await post_status(client, sms_status(sid_ok, "delivered")) == 204
    assert await post_status(client, sms_status(sid_lost, "undelivered", "30003")) == 204
    assert (await load(sessions, ok)).status == DELIVERED
    gone = await load(sessions, lost)
    assert (gone.status, gone.reason, gone.error_code) == (
        UNDELIVERABLE, "twilio undelivered (30003)", "30003"
    )  # fmt: skip


# ----------------------------------------------------------------------------- re-checks


async def test_a_member_stopped_after_planning_gets_nothing(sessions, make_sender, fake_twilio):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    async with transaction(sessions) as s:
        member = await s.get(Member, member_id)
        await consent.stop(s, member=member, channel="sms", at=T0, source="TD")
    sender = await make_sender()
    assert (await sender.drain_once(T0)).suppressed == 1
    msg = await load(sessions, mid)
    assert (msg.status, msg.reason, msg.attempts) == (SUPPRESSED, "stopped", 0)
    assert fake_twilio.messages == [] and fake_twilio.refused == []


async def test_outside_quiet_hours_a_message_waits_for_the_next_allowed_moment(
    sessions, make_sender, fake_twilio
):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    late = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
    sender = await make_sender()
    assert (await sender.drain_once(late)).deferred == 1
    msg = await load(sessions, mid)
    next_morning = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert (msg.status, msg.send_after, msg.reason) == (QUEUED, next_morning, "quiet hours")
    assert (await sender.drain_once(next_morning - timedelta(seconds=1))).claimed == 0
    assert (await sender.drain_once(next_morning)).sent == 1
    assert fake_twilio.messages[0]["Body"] == msg.text


async def test_the_members_preferred_time_shifts_the_send(sessions, make_sender, fake_twilio):
    member_id = await add_member(sessions, preferred="19:00-20:30")
    mid = await add_message(sessions, member_id=member_id)
    sender = await make_sender()
    assert (await sender.drain_once(T0)).deferred == 1  # 10:00 Shanghai
    evening = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)  # 19:00 Shanghai
    assert (await load(sessions, mid)).send_after == evening
    assert (await sender.drain_once(evening)).sent == 1


async def test_a_greeting_is_never_sent_on_a_later_day(sessions, make_sender, fake_twilio):
    member_id = await add_member(sessions)
    next_day = await add_message(sessions, member_id=member_id, kind="birthday", occasion="2026")
    tonight = await add_message(sessions, member_id=member_id, kind="holiday", occasion="x:2026")
    care = await add_message(sessions, member_id=member_id, kind="care_d3", occasion="p:1")
    sender = await make_sender()
    # 22:30 on DAY: the greeting's next allowed moment is tomorrow → too late
    result = await sender.drain_once(datetime(2026, 12, 1, 14, 30, tzinfo=UTC))
    assert (result.suppressed, result.deferred) == (2, 1)
    for mid in (next_day, tonight):
        msg = await load(sessions, mid)
        assert (msg.status, msg.reason) == (SUPPRESSED, "too_late")
    assert (await load(sessions, care)).status == QUEUED  # care may go the next morning
    assert fake_twilio.messages == []


async def test_a_greeting_found_on_the_next_day_is_too_late(sessions, make_sender, fake_twilio):
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id, kind="birthday", occasion="2026")
    sender = await make_sender()
    assert (await sender.drain_once(T0 + timedelta(days=1))).suppressed == 1
    assert (await load(sessions, mid)).reason == "too_late"


# ----------------------------------------------------------------------------- WeChat


async def test_a_customer_service_message_goes_to_wechat_with_a_fetched_token(
    sessions, make_sender, fake_wechat
):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id)
    mid = await add_message(
        sessions, member_id=member_id, channel="wechat", via="customer_service", address=OPENID
    )
    sender = await make_sender(wechat=fake_wechat)
    assert (await sender.drain_once(T0)).sent == 1
    [token_request] = fake_wechat.token_requests
    assert token_request["appid"] == WECHAT_APP_ID
    [sent] = fake_wechat.sent
    assert sent["touser"] == OPENID and sent["msgtype"] == "text"
    assert sent["text"] == {"content": "天冷了，注意保暖。回复TD退订"}
    assert sent["access_token"] in fake_wechat.valid_tokens
    msg = await load(sessions, mid)
    assert (msg.status, msg.via, msg.provider_id) == (SENT, "customer_service", None)


async def test_a_service_notice_goes_as_a_template_message(sessions, make_sender, fake_wechat):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id, wrote_at=None)
    mid = await add_message(
        sessions, member_id=member_id, kind="points_notice", channel="wechat", via="template",
        address=OPENID, text="您的积分已更新：1,280 分。回复TD退订",
    )  # fmt: skip
    sender = await make_sender(wechat=fake_wechat, templates={"points_notice": "TPL-points"})
    assert (await sender.drain_once(T0)).sent == 1
    [sent] = fake_wechat.templates_sent
    assert (sent["touser"], sent["template_id"]) == (OPENID, "TPL-points")
    assert sent["data"] == {"content": {"value": "您的积分已更新：1,280 分。回复TD退订"}}
    msg = await load(sessions, mid)
    assert (msg.status, msg.via, msg.provider_id) == (SENT, "template", str(sent["msgid"]))


async def test_wechat_busy_is_retried(sessions, make_sender, fake_wechat):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id)
    mid = await add_message(
        sessions, member_id=member_id, channel="wechat", via="customer_service", address=OPENID
    )
    sender = await make_sender(wechat=fake_wechat)
    fake_wechat.failures.append(("errcode", -1))
    assert (await sender.drain_once(T0)).failed == 1
    assert (await load(sessions, mid)).reason == "wechat -1; provider down"
    assert (await sender.drain_once(T0 + timedelta(seconds=1))).sent == 1


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_a_closed_window_reroutes_to_sms_once(
    sessions, make_sender, fake_wechat, fake_twilio, errcode
):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id)
    mid = await add_message(
        sessions, member_id=member_id, channel="wechat", via="customer_service", address=OPENID
    )
    sender = await make_sender(wechat=fake_wechat)
    fake_wechat.failures.append(("errcode", errcode))
    result = await sender.drain_once(T0)
    assert (result.rerouted, result.deferred) == (1, 1)
    msg = await load(sessions, mid)
    assert (msg.status, msg.channel, msg.via, msg.address, msg.attempts) == (
        QUEUED, "sms", "twilio", PHONE, 1
    )  # fmt: skip
    assert msg.reason.startswith(f"rerouted to twilio: wechat {errcode}")
    assert (await sender.drain_once(T0)).sent == 1
    assert fake_twilio.messages[0]["To"] == PHONE and fake_wechat.sent == []
    assert (await load(sessions, mid)).attempts == 2


async def test_a_service_notice_out_of_the_window_falls_back_to_its_template(
    sessions, make_sender, fake_wechat, fake_twilio
):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id)
    mid = await add_message(
        sessions, member_id=member_id, kind="card_pickup", occasion="card:1", channel="wechat",
        via="customer_service", address=OPENID,
    )  # fmt: skip
    sender = await make_sender(wechat=fake_wechat, templates={"card_pickup": "TPL-card"})
    fake_wechat.failures.append(("errcode", 45015))
    await drain_until_idle(sender, now=T0)
    msg = await load(sessions, mid)
    assert (msg.status, msg.via) == (SENT, "template")
    assert [t["template_id"] for t in fake_wechat.templates_sent] == ["TPL-card"]
    assert fake_twilio.messages == []


async def test_no_channel_left_after_wechat_refused_makes_it_undeliverable(
    sessions, make_sender, fake_wechat, fake_twilio
):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id)
    async with transaction(sessions) as s:
        s.add(Identity(member_id=member_id, channel="sms", address=PHONE, bad=True))
    mid = await add_message(
        sessions, member_id=member_id, channel="wechat", via="customer_service", address=OPENID
    )
    sender = await make_sender(wechat=fake_wechat)
    fake_wechat.failures.append(("errcode", 45015))
    assert (await sender.drain_once(T0)).undeliverable == 1
    msg = await load(sessions, mid)
    assert (msg.status, msg.error_code) == (UNDELIVERABLE, "45015")
    assert fake_twilio.messages == []


# ----------------------------------------------------------------------------- rate limit


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(self.t + delay)
        self.t += delay


async def test_the_limiter_lets_concurrent_callers_through_evenly_spaced():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock.monotonic, sleep=clock.sleep)
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        stamps.append(clock.t)

    await asyncio.gather(*(one() for _ in range(20)))
    assert stamps == pytest.approx([i / 10 for i in range(20)])
    await RateLimiter(0).acquire()
    await RateLimiter(None).acquire()


async def test_a_late_wake_never_lets_more_than_the_rate_into_one_second():
    """At 2/s the slots are 0, 0.5, 1.0, 1.5 …; a caller woken late (at 0.9) would let the
    next ones keep the schedule (1.0, 1.5: three in [0.9, 1.9)). The window rule makes
    the third wait until 1.9, and the pacing goes on from there."""
    clock = FakeClock()
    late = {0.5: 0.4}

    async def sleep(delay: float) -> None:
        target = clock.t + delay
        clock.t = target + late.pop(round(target, 6), 0.0)

    limiter = RateLimiter(2, clock=clock.monotonic, sleep=sleep)
    stamps = []
    for _ in range(6):
        await limiter.acquire()
        stamps.append(round(clock.t, 6))
    assert stamps == [0.0, 0.9, 1.0, 1.9, 2.4, 2.9]
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(stamps, stamps[2:], strict=False))


async def test_the_sender_holds_the_sms_rate(sessions, make_sender, fake_twilio):
    """20 messages at 10/s: the sends are 0.1 s apart on the limiter's clock (a fake clock:
    the measured accuracy on a real one is in bench/bench_outbox.py)."""
    clock = FakeClock()
    stamps: list[float] = []

    class Stamped:
        def __init__(self, inner: SmsTransport):
            self.inner, self.channel, self.via = inner, inner.channel, inner.via
            self.receipts = inner.receipts

        async def send(self, message):
            stamps.append(clock.t)
            return await self.inner.send(message)

    member_id = await add_member(sessions)
    for i in range(20):
        await add_message(sessions, member_id=member_id, occasion=f"o{i}")
    sender = await make_sender(
        outbox={"rate_sms": 10, "concurrency": 4},
        limiters={"sms": RateLimiter(10, clock=clock.monotonic, sleep=clock.sleep)},
        wrap=Stamped,
    )
    assert (await sender.drain_once(T0)).sent == 20
    assert len(fake_twilio.messages) == 20
    assert stamps[-1] - stamps[0] >= 1.9 - 1e-9
    assert sorted(clock.sleeps) == pytest.approx([i / 10 for i in range(1, 20)])


async def test_a_pass_claims_no_more_than_the_rate_lets_out_in_half_the_claim_timeout(
    sessions, make_sender
):
    member_id = await add_member(sessions)
    for i in range(5):
        await add_message(sessions, member_id=member_id, occasion=f"o{i}")
    clock = FakeClock()
    sender = await make_sender(
        outbox={"rate_sms": 0.05, "claim_timeout": 60},  # 1.5 messages per 30 s
        limiters={"sms": RateLimiter(0.05, clock=clock.monotonic, sleep=clock.sleep)},
    )
    assert (await sender.drain_once(T0)).claimed == 2


# ----------------------------------------------------------------------------- crashes, cancel


async def test_a_message_claimed_by_a_process_that_died_is_sent_again(
    sessions, make_sender, fake_twilio
):
    member_id = await add_member(sessions)
    stuck = await add_message(sessions, member_id=member_id, occasion="a")
    busy = await add_message(sessions, member_id=member_id, occasion="b")
    await set_status(sessions, stuck, status=SENDING, claimed_at=T0 - timedelta(minutes=6))
    await set_status(sessions, busy, status=SENDING, claimed_at=T0 - timedelta(minutes=1))
    sender = await make_sender(outbox={"claim_timeout": 300})
    assert (await sender.drain_once(T0)).sent == 1
    msg = await load(sessions, stuck)
    assert (msg.status, msg.attempts) == (SENT, 2)  # the lost attempt counts
    assert ("sending", "sending") in [e[:2] for e in await history(sessions, stuck)]
    assert (await load(sessions, busy)).status == SENDING


async def test_cancelling_mid_send_leaves_the_claim_to_expire_and_the_message_is_resent(
    sessions, make_sender, fake_twilio
):
    """The at-least-once boundary: Twilio accepted, the process went away before recording."""
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id)
    sender = await make_sender()
    task = asyncio.ensure_future(sender.run())

    async def die(_accepted: dict) -> None:
        task.cancel()

    fake_twilio.before_answer = die
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    fake_twilio.before_answer = None
    assert (await load(sessions, mid)).status == SENDING
    assert (await sender.drain_once(T0 + timedelta(seconds=299))).claimed == 0
    assert (await sender.drain_once(T0 + timedelta(seconds=301))).sent == 1
    assert len(fake_twilio.messages) == 2  # sent twice: documented
    assert (await load(sessions, mid)).attempts == 2


async def test_a_cancelled_pass_records_what_was_sent_and_releases_the_rest(
    sessions, make_sender, fake_twilio
):
    waiting = asyncio.Event()

    async def never(_delay: float) -> None:
        waiting.set()
        await asyncio.Event().wait()

    member_id = await add_member(sessions)
    ids = [await add_message(sessions, member_id=member_id, occasion=f"o{i}") for i in range(3)]
    sender = await make_sender(
        outbox={"rate_sms": 1, "concurrency": 1},
        limiters={"sms": RateLimiter(1, sleep=never)},
    )
    task = asyncio.ensure_future(sender.drain_once(T0))
    # one at a time: message 2 waits for its slot only once message 1 is sent; a cancelled
    # pass still records message 1 and gives messages 2 and 3 back
    await asyncio.wait_for(waiting.wait(), 10)
    assert len(fake_twilio.messages) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    statuses = sorted([(await load(sessions, i)).status for i in ids])
    assert statuses == [QUEUED, QUEUED, SENT]
    released = [i for i in ids if (await load(sessions, i)).status == QUEUED]
    assert (await history(sessions, released[0]))[-1] == ("sending", "queued", "released unsent")


# ----------------------------------------------------------------------------- two senders


async def test_two_senders_on_one_outbox_send_each_message_once(sessions, make_sender, fake_twilio):
    member_ids = [await add_member(sessions, phone=f"+86139{i:08d}") for i in range(30)]
    for i, member_id in enumerate(member_ids):
        await add_message(
            sessions, member_id=member_id, address=f"+86139{i:08d}", text=f"message {i}"
        )
    a = await make_sender(outbox={"batch_size": 7})
    b = await make_sender(outbox={"batch_size": 7})
    ra, rb = await asyncio.gather(drain_until_idle(a, now=T0), drain_until_idle(b, now=T0))
    assert ra.sent + rb.sent == 30 and ra.lost + rb.lost == 0
    assert sorted(m["Body"] for m in fake_twilio.messages) == sorted(
        f"message {i}" for i in range(30)
    )


# ----------------------------------------------------------------------------- console


async def test_the_console_transport_prints_one_masked_line():
    out = io.StringIO()
    transport = ConsoleTransport(out=out)

    class Msg:
        kind, address, text = "birthday", PHONE, "生日快乐！回复TD退订"

    result = await transport.send(Msg())
    assert result.status == "sent" and result.provider_id.startswith("console-")
    assert out.getvalue() == "[birthday to +86138****8000] 生日快乐！回复TD退订\n"


async def test_console_sms_in_the_embedded_default(sessions, make_settings):
    from scheduler.send.providers import ConsoleSmsSender

    out = io.StringIO()
    console = ConsoleSmsSender(out=out)
    transports = Transports.build(sms_sender=console, public_url=PUBLIC_URL)
    sender = Sender(sessions=sessions, settings=make_settings(), transports=transports)
    member_id = await add_member(sessions)
    mid = await add_message(sessions, member_id=member_id, via="console")
    assert (await sender.drain_once(T0)).sent == 1
    msg = await load(sessions, mid)
    assert (msg.status, msg.via) == (SENT, "console")
    assert "+86138****8000" in out.getvalue() and PHONE not in out.getvalue()
    assert [m.status_callback for m in console.sent] == [None]
    assert transports.wechat_cs is None and transports.channels() == {"sms", "console"}
