"""One bad de-duplication key never fails its neighbours.

On PostgreSQL the claims of concurrent messages go in one statement and the stored
answers in one `executemany`: a key longer than `inbound_messages.dedupe_key`
(varchar 200) used to fail the whole batch, so other members' messages got 500.
Over-long identifiers are now refused at the edge (400), keys are bounded
(`bot.inbound_outcome.bounded_key`), and a refused batch is written again item by item.
Meaningful on PostgreSQL (SQLite does not enforce the column width); run on both."""

from __future__ import annotations

import asyncio
import io

from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import SMS_SENDER
from bot.channels.wechat_message import WeChatMessage
from bot.conversation import Inbound, Reply
from bot.inbound_log import InboundLog
from bot.inbound_outcome import KEY_MAX, bounded_key
from models import rawdb
from models.group_commit import GroupWriter
from models.tables.inbound import InboundMessage
from scheduler.send.providers import ConsoleSmsSender
from tests.fakes import TWILIO_AUTH_TOKEN
from tests.payloads import (
    WECHAT_ACCOUNT,
    plain,
    reply_fields,
    sms,
    twilio_signature,
    wechat_settings,
    wechat_text,
)

PUBLIC_URL = "https://bot.example.com"
TABLE = InboundMessage.__table__


class Echo:
    async def handle(self, inbound: Inbound) -> Reply:
        await asyncio.sleep(0)
        return Reply(f"echo:{inbound.sender}:{inbound.text}")


async def app_client(aiohttp_client, make_settings):
    settings = make_settings(
        server={"public_url": PUBLIC_URL},
        wechat=wechat_settings(aes_key=""),
        sms={"provider": "console", "twilio": {"auth_token": TWILIO_AUTH_TOKEN}},
    )
    app = create_app(settings, conversation=Echo())
    app[SMS_SENDER] = ConsoleSmsSender(out=io.StringIO())
    return await aiohttp_client(app)


def long_type_message(openid: str) -> str:
    """A signed-looking message with a 300-character MsgType and no MsgId."""
    return (
        f"<xml><ToUserName>{WECHAT_ACCOUNT}</ToUserName><FromUserName>{openid}</FromUserName>"
        f"<CreateTime>1790000000</CreateTime><MsgType>{'t' * 300}</MsgType></xml>"
    )


async def test_a_wechat_message_with_an_over_long_type_fails_alone(aiohttp_client, make_settings):
    client = await app_client(aiohttp_client, make_settings)

    async def send(query_body):
        query, body = query_body
        resp = await client.post("/wechat", params=query, data=body)
        return resp.status, await resp.text()

    for _ in range(3):
        bad = send(plain(long_type_message("o_bad")))
        normal = [send(plain(wechat_text(f"o_{n}", f"帮助{n}"))) for n in range(10)]
        results = await asyncio.gather(bad, *normal)
        assert 400 <= results[0][0] < 500, results[0]
        for n, (status, text) in enumerate(results[1:]):
            assert status == 200, text
            assert reply_fields(text)["Content"] == f"echo:o_{n}:帮助{n}"


async def test_an_sms_with_an_over_long_sid_fails_alone(aiohttp_client, make_settings):
    client = await app_client(aiohttp_client, make_settings)
    url = PUBLIC_URL + "/sms/twilio"

    async def send(form):
        headers = {"X-Twilio-Signature": twilio_signature(url, form)}
        resp = await client.post("/sms/twilio", data=form, headers=headers)
        return resp.status, await resp.text()

    forms = [sms("+8613800138000", "bad", sid="SM" + "a" * 200)]
    forms += [sms(f"+86139001390{n:02d}", f"hi{n}") for n in range(10)]
    results = await asyncio.gather(*(send(f) for f in forms))
    assert 400 <= results[0][0] < 500, results[0]
    for n, (status, text) in enumerate(results[1:]):
        assert status == 200, text
        assert f"hi{n}" in text


async def test_an_over_long_key_in_a_claim_batch_fails_only_itself(engine):
    """Past the edge checks: the batch is written again item by item."""
    inbound_log = InboundLog(engine)
    deadline = asyncio.get_running_loop().time() + 5
    keys = ["k" * 300] + [f"msg:o_{n}:{n}" for n in range(10)]

    async def respond(key: str):
        return await inbound_log.respond_once(
            "wechat", key, lambda: _answer(key), deadline=deadline
        )

    results = await asyncio.gather(*(respond(k) for k in keys), return_exceptions=True)
    for key, result in zip(keys[1:], results[1:], strict=True):
        assert not isinstance(result, BaseException), result
        assert result.text == f"answer {key}"
    await inbound_log.settle()
    async with engine.connect() as conn:
        stored = set((await conn.execute(select(TABLE.c.dedupe_key))).scalars())
    assert set(keys[1:]) <= stored


async def _answer(key: str) -> Reply:
    return Reply(f"answer {key}")


async def test_an_over_long_deferred_write_is_dropped_alone(engine):
    raw = rawdb.for_engine(engine)
    assert raw is not None
    now = rawdb.sql_time(rawdb.read_time("2026-12-01 10:00:00"), raw.dialect)
    sql = (
        "INSERT INTO inbound_messages (channel, dedupe_key, status, reply_text, created_at)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    keys = ["x" * 300] + [f"k{n}" for n in range(10)]
    for n, key in enumerate(keys):
        raw.defer(sql, ("wechat", key, "answered", "a", now), n)
    await raw.settle()
    async with engine.connect() as conn:
        stored = set((await conn.execute(select(TABLE.c.dedupe_key))).scalars())
    assert set(keys[1:]) <= stored


def test_keys_are_bounded_and_stay_distinct():
    long_a, long_b = "evt:" + "a" * 300, "evt:" + "a" * 299 + "b"
    assert len(bounded_key(long_a)) <= KEY_MAX
    assert bounded_key(long_a) != bounded_key(long_b)
    assert bounded_key("msg:o_1:42") == "msg:o_1:42"
    event = WeChatMessage(
        openid="o" * 64, account="gh", msg_type="event", create_time=17_900_000_000,
        msg_id=None, content="", event="e" * 32, event_key="k" * 200,
    )  # fmt: skip
    assert len(event.dedupe_key) <= KEY_MAX


class Refused(Exception):
    sqlstate = "22001"  # string data right truncation, as asyncpg reports it


async def _batched(flush, items):
    writer = GroupWriter(flush)
    return await asyncio.gather(*(writer.submit(i) for i in items), return_exceptions=True)


async def test_a_refused_batch_is_flushed_again_item_by_item():
    flushes: list[list[str]] = []

    async def flush(items: list[str]) -> list[str]:
        flushes.append(items)
        if "bad" in items:
            raise Refused("value too long")
        return [i.upper() for i in items]

    results = await _batched(flush, ["a", "bad", "c"])
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], Refused)
    assert flushes == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


async def test_a_lost_connection_fails_the_batch_without_a_retry_per_item():
    flushes: list[list[str]] = []

    async def flush(items: list[str]) -> list[str]:
        flushes.append(items)
        raise ConnectionResetError("gone")

    results = await _batched(flush, ["a", "b", "c"])
    assert all(isinstance(r, ConnectionResetError) for r in results)
    assert flushes == [["a", "b", "c"]]
