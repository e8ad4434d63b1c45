# ruff: noqa: F811  (the sender fixtures are imported from tests/test_sender.py)
"""The outbox sender under provider faults (ISSUE10 21–25): long outages, recovery,
`Retry-After`, hangs, claims that could run out, the WeChat token fetched once and one
concurrency limit per channel. Against the local fakes of tests/fakes.py."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import aiohttp
import pytest

import bot.retry_after
from bot.retry_after import parse_retry_after
from bot.wechat_api import WeChatApi
from models.outbox.states import FAILED, GAVE_UP, QUEUED, SENT
from scheduler.send.providers import WeChatApiError
from scheduler.send.ratelimit import SharedRateLimiter
from scheduler.send.send_retry import HELD_PREFIX
from scheduler.send.sender import drain_until_idle
from tests.fakes import WECHAT_APP_ID, WECHAT_APP_SECRET
from tests.test_outbox import T0, add_member, add_message, load, set_status
from tests.test_sender import OPENID, fake_twilio, fake_wechat, make_sender, wechat_identity  # noqa: F401 (fixtures)

PHONE2 = "+8613800138002"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def messages(sessions, n: int, **kw) -> list[int]:
    member_id = await add_member(sessions)
    return [await add_message(sessions, member_id=member_id, occasion=f"o{i}", **kw)
            for i in range(n)]  # fmt: skip


# ------------------------------------------------------------------ 21: long outages


async def test_an_outage_longer_than_the_attempts_last_loses_nothing(
    sessions, make_sender, fake_twilio
):
    """The provider is down for 20 minutes; probes do not spend the probing message's
    attempts, so with max_attempts = 3 nothing is given up and all go out after."""
    ids = await messages(sessions, 4)
    sender = await make_sender(outbox={"concurrency": 1, "max_attempts": 3})
    fake_twilio.down = 503
    for second in range(0, 1200, 5):
        await sender.drain_once(at(second))
    states = [await load(sessions, i) for i in ids]
    assert [m.status for m in states].count(FAILED) >= 1
    assert all(m.reason != GAVE_UP for m in states)
    assert max(m.attempts for m in states) == 1
    assert len(fake_twilio.refused) > 10  # it kept probing
    fake_twilio.down = None
    await drain_until_idle(sender, now=at(1500))
    assert [(await load(sessions, i)).status for i in ids] == [SENT] * 4
    assert len(fake_twilio.messages) == 4


async def test_a_message_refused_while_the_provider_takes_others_gives_up(
    sessions, make_sender, fake_twilio
):
    """max_attempts still means something: a message the provider keeps failing while
    it accepts the others spends an attempt each time (it is not always the probe)."""
    member_id = await add_member(sessions)
    other = await add_member(sessions, phone=PHONE2)
    poison = await add_message(sessions, member_id=other, address=PHONE2, send_after=T0)
    ids = [await add_message(sessions, member_id=member_id, occasion=f"o{i}",
                             send_after=at(i + 1)) for i in range(12)]  # fmt: skip
    sender = await make_sender(outbox={"concurrency": 1, "max_attempts": 3})
    fake_twilio.refuse_to[PHONE2] = 500
    for second in range(0, 120):
        await sender.drain_once(at(second))
    msg = await load(sessions, poison)
    assert (msg.status, msg.reason, msg.attempts) == (FAILED, GAVE_UP, 3)
    assert [(await load(sessions, i)).status for i in ids] == [SENT] * 12


# ------------------------------------------------------------- 22: release on recovery


async def test_a_probe_that_succeeds_releases_what_every_sender_held(
    sessions, make_sender, fake_twilio
):
    """Sender B (a long pause) holds four messages; sender A's probe succeeds a second
    later and the held ones go at once, not at the end of B's pause."""
    member_id = await add_member(sessions)
    first = await add_message(sessions, member_id=member_id, occasion="first")
    a = await make_sender(outbox={"concurrency": 1, "retry_backoff": 1})
    fake_twilio.failures.append(503)
    assert (await a.drain_once(T0)).failed == 1  # A is now down (paused 1 s)
    held = [await add_message(sessions, member_id=member_id, occasion=f"h{i}")
            for i in range(4)]  # fmt: skip
    b = await make_sender(outbox={"concurrency": 1, "retry_backoff": 200})
    fake_twilio.failures.append(503)
    assert ((r := await b.drain_once(T0)).failed, r.deferred) == (1, 3)
    assert (await load(sessions, held[1])).send_after == at(200)
    total = await drain_until_idle(a, now=at(1))
    assert total.sent == 5
    assert [(await load(sessions, i)).status for i in [first, *held]] == [SENT] * 5


def sms_open(sender) -> bool:
    """The sender's SMS breaker as `GET /metrics` reports it."""
    return dict(sender.breaker_states())["sms"]


async def test_a_sender_left_idle_after_a_recovery_closes_its_breaker(
    sessions, make_sender, fake_twilio
):
    """A sender whose pause ended with nothing to send does not keep its breaker (and
    `memberbot_breaker_open`) open until its next message — hours at night, a false
    "breaker open" alert: while another sender still holds messages for the channel or
    waits to retry one because it was down, the channel is down for it too; once none
    is left, it is up again."""
    member_id = await add_member(sessions)
    mine = await add_message(sessions, member_id=member_id, occasion="mine")
    b = await make_sender(outbox={"concurrency": 1, "retry_backoff": 5})
    fake_twilio.down = 503
    assert (await b.drain_once(T0)).failed == 1
    assert sms_open(b)
    # another sender took B's message and is holding one for the channel, far ahead
    await set_status(sessions, mine, status=SENT, reason=None)
    held = await add_message(sessions, member_id=member_id, occasion="held")
    await set_status(sessions, held, reason=HELD_PREFIX + "sms failing", send_after=at(100))
    assert (await b.drain_once(at(6))).claimed == 0
    assert sms_open(b)
    # the other sender's probe went through and its held message was sent
    await set_status(sessions, held, status=SENT, reason=None)
    assert (await b.drain_once(at(7))).claimed == 0
    assert not sms_open(b)


async def test_after_a_recovery_no_idle_sender_reports_its_breaker_open(
    sessions, make_sender, fake_twilio
):
    """Both senders find the provider down; A's probe gets through and sends everything;
    B, with nothing left, reports its breaker closed after its pause."""
    member_id = await add_member(sessions)
    first = await add_message(sessions, member_id=member_id, occasion="first")
    a = await make_sender(outbox={"concurrency": 1, "retry_backoff": 1})
    b = await make_sender(outbox={"concurrency": 1, "retry_backoff": 5})
    fake_twilio.down = 503
    assert (await a.drain_once(T0)).failed == 1
    second = await add_message(sessions, member_id=member_id, occasion="second")
    assert (await b.drain_once(T0)).failed == 1
    fake_twilio.down = None
    assert (await drain_until_idle(a, now=at(2))).sent == 2
    assert [(await load(sessions, i)).status for i in (first, second)] == [SENT] * 2
    assert sms_open(b)  # paused: it has not looked yet
    await b.drain_once(at(6))
    assert not sms_open(a) and not sms_open(b)


# ------------------------------------------------------------------ 23: Retry-After


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert parse_retry_after("30") == 30
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 02 Dec 2026 12:01:30 GMT", now=now) == 90
    assert parse_retry_after("Wed, 02 Dec 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("99999999") == 3600


@pytest.mark.parametrize("header", ["30", "http-date"])
async def test_twilio_429_retry_after_is_honoured(
    sessions, make_sender, fake_twilio, header, monkeypatch
):
    ids = await messages(sessions, 3)
    sender = await make_sender(outbox={"concurrency": 1})
    if header == "http-date":
        # The date is read against the wall clock: held still, so a slow machine cannot
        # shorten the 30 s (an HTTP date has whole seconds only).
        wall = float(int(time.time()))
        monkeypatch.setattr(bot.retry_after, "time", SimpleNamespace(time=lambda: wall))
        header = datetime.fromtimestamp(wall + 30, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    fake_twilio.failures.append((429, {"Retry-After": header}))
    assert (await sender.drain_once(T0)).failed == 1
    msg = await load(sessions, ids[0])
    assert at(28) <= msg.next_attempt_at <= at(30)
    assert at(28) <= (await load(sessions, ids[1])).send_after <= at(30)
    assert (await sender.drain_once(at(1.1))).claimed == 0
    assert (await sender.drain_once(at(20))).claimed == 0
    assert len(fake_twilio.refused) == 1
    assert (await drain_until_idle(sender, now=at(30))).sent == 3


async def test_wechat_429_retry_after_is_honoured(sessions, make_sender, fake_wechat):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id)
    mid = await add_message(sessions, member_id=member_id, channel="wechat",
                            via="customer_service", address=OPENID)  # fmt: skip
    sender = await make_sender(wechat=fake_wechat)
    fake_wechat.failures.append((429, {"Retry-After": "45"}))
    assert (await sender.drain_once(T0)).failed == 1
    assert (await load(sessions, mid)).next_attempt_at == at(45)
    assert (await sender.drain_once(at(30))).claimed == 0
    assert (await drain_until_idle(sender, now=at(45))).sent == 1


# --------------------------------------------------------- 25: hangs and claim timing


async def test_claims_are_sized_by_what_the_concurrency_can_send_in_time(sessions, make_sender):
    """claim_timeout 60, 2 calls at once, calls of up to 10 s: 2 × 30 / 10 = 6 a pass."""
    await messages(sessions, 20)
    sender = await make_sender(outbox={"claim_timeout": 60, "concurrency": 2})
    assert (await sender.drain_once(T0)).claimed == 6


async def test_a_message_whose_claim_would_run_out_is_given_back_not_sent(
    sessions, make_sender, fake_twilio
):
    """The first call takes 55 s of a 60 s claim; the second message is released unsent
    instead of being sent when another sender may already have taken it over."""
    ids = await messages(sessions, 2)
    clock = {"now": T0}

    class Slow:
        def __init__(self, inner):
            self.inner, self.channel, self.via = inner, inner.channel, inner.via
            self.receipts = inner.receipts

        async def send(self, m):
            clock["now"] = clock["now"] + timedelta(seconds=55)
            return await self.inner.send(m)

    sender = await make_sender(outbox={"claim_timeout": 60, "concurrency": 1}, wrap=Slow)
    sender._clock = lambda: clock["now"]
    result = await sender.drain_once()
    assert (result.sent, result.deferred, result.lost) == (1, 1, 0)
    second = await load(sessions, ids[1])
    assert (second.status, second.reason) == (QUEUED, "claim running out")
    assert len(fake_twilio.messages) == 1


async def test_a_hanging_sms_provider_does_not_hold_up_wechat(
    sessions, make_sender, fake_twilio, fake_wechat
):
    member_id = await add_member(sessions)
    await wechat_identity(sessions, member_id)
    sms_only = await add_member(sessions, phone=PHONE2)
    await add_message(sessions, member_id=sms_only, address=PHONE2)
    await add_message(sessions, member_id=member_id, occasion="w", channel="wechat",
                      via="customer_service", address=OPENID)  # fmt: skip
    sender = await make_sender(outbox={"concurrency": 1}, wechat=fake_wechat, call_timeout=30)
    fake_twilio.hangs = 1
    drain = asyncio.ensure_future(sender.drain_once(T0))
    try:
        await fake_wechat.wait_sent(1, within=10)
        assert fake_twilio.hung == 1 and not drain.done()
    finally:
        fake_twilio.release()
        await drain


async def test_waiting_callers_share_one_token_fetch_and_its_failure(fake_wechat):
    fake_wechat.token_hangs = 1
    async with aiohttp.ClientSession() as http:
        api = WeChatApi(http, base_url=fake_wechat.base_url, app_id=WECHAT_APP_ID,
                        app_secret=WECHAT_APP_SECRET, timeout=0.5)  # fmt: skip
        results = await asyncio.gather(
            *(api.send_text(OPENID, f"m{i}") for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, WeChatApiError) for r in results)
        assert len(fake_wechat.token_requests) == 1
        fake_wechat.release()
        await api.send_text(OPENID, "again")  # the next caller fetches afresh
    assert len(fake_wechat.token_requests) == 2 and len(fake_wechat.sent) == 1


# ------------------------------------------------------------- 24: one rate for all


async def test_two_senders_on_one_database_hold_one_rate_together(
    sessions, make_sender, fake_twilio
):
    """4 SMS/s shared by two senders: never more than 4 received in any one second."""
    await messages(sessions, 16)
    outbox = {"rate_sms": 4, "batch_size": 4, "concurrency": 4}
    a, b = await make_sender(outbox=outbox), await make_sender(outbox=outbox)
    sent = await asyncio.gather(drain_until_idle(a, now=T0), drain_until_idle(b, now=T0))
    assert sent[0].sent + sent[1].sent == 16 and sent[0].sent and sent[1].sent
    times = sorted(fake_twilio.received)
    assert len(times) == 16
    assert max(sum(1 for u in times if t <= u < t + 1) for t in times) <= 4


async def test_shared_limiters_space_every_turn_whoever_takes_it(sessions):
    now = {"t": 1000.0}

    async def sleep(delay: float) -> None:
        now["t"] += delay

    limiters = [
        SharedRateLimiter(10, sessions=sessions, channel="sms", clock=lambda: now["t"],
                          sleep=sleep)
        for _ in range(2)
    ]  # fmt: skip
    stamps = []
    for i in range(6):
        await limiters[i % 2].acquire()
        stamps.append(now["t"])
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert gaps == pytest.approx([0.105] * 5)
    await SharedRateLimiter(0, sessions=sessions, channel="wechat").acquire()


async def test_while_the_provider_is_down_one_call_at_a_time_probes_it(
    sessions, make_sender, fake_twilio
):
    """The calls under way when it went down fail together; after the pause only one
    message probes it, however many are claimed and however many calls are allowed."""
    await messages(sessions, 8)
    sender = await make_sender(outbox={"concurrency": 4})
    fake_twilio.down = 503
    await sender.drain_once(T0)
    first = len(fake_twilio.refused)
    for second in (1, 3, 7, 15):
        await sender.drain_once(at(second))
    assert len(fake_twilio.refused) == first + 4
    fake_twilio.down = None
    assert (await drain_until_idle(sender, now=at(31))).sent == 8


async def test_a_retry_after_holds_every_sender_of_the_channel(sessions, make_sender, fake_twilio):
    """Sender A is told `Retry-After: 30`; sender B, which was told nothing, waits too
    (the shared rate row of the channel is held for 30 s)."""
    ids = await messages(sessions, 2)
    clock = {"t": 5000.0}
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        clock["t"] += delay

    def limiter():
        return SharedRateLimiter(10, sessions=sessions, channel="sms",
                                 clock=lambda: clock["t"], sleep=sleep)  # fmt: skip

    a = await make_sender(outbox={"concurrency": 1, "batch_size": 1},
                          limiters={"sms": limiter()})  # fmt: skip
    b = await make_sender(outbox={"concurrency": 1}, limiters={"sms": limiter()})
    fake_twilio.failures.append((429, {"Retry-After": "30"}))
    assert (await a.drain_once(T0)).failed == 1
    clock["t"] += 1
    assert (await b.drain_once(at(1))).sent == 1  # the other message, by B
    assert sum(slept) == pytest.approx(29)
    assert (await load(sessions, ids[1])).status == SENT
