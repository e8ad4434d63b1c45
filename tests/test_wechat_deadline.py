"""The WeChat reply deadline holds whatever the database does (a held lock), a claim
whose holder failed is taken over once its lease expires, and a flood of requests is
answered in time with one effect and one answer each."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time

import pytest
from aiohttp import web
from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import INBOUND_LOG
from bot.channels.wechat import WECHAT_OPTIONS, WeChatOptions
from bot.cli.serve import LISTEN_BACKLOG
from bot.conversation import Reply
from bot.handler_slots import HandlerSlots
from bot.inbound_outcome import HandlingFailed
from bot.inbound_store import InboundStore
from bot.loop_lag import LoopLag
from models.tables.inbound import InboundMessage
from tests import test_wechat
from tests.conftest import is_pg
from tests.payloads import plain, reply_fields, wechat_settings, wechat_text
from tests.test_wechat import OPENID, FakeConversation, post

# the webhook tests' fixtures
conversation, fake_api, make_client = (
    test_wechat.conversation,
    test_wechat.fake_api,
    test_wechat.make_client,
)


@contextlib.asynccontextmanager
async def database_held(db_url: str, table: str = "inbound_messages"):
    """Another connection holds the database's write lock (SQLite) or an exclusive lock
    on `table` (PostgreSQL) until the block ends."""
    if is_pg():
        import asyncpg

        conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
        tx = conn.transaction()
        await tx.start()
        await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await tx.rollback()
            await conn.close()
        return
    path = db_url.removeprefix("sqlite+aiosqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def rows(client, key: str):
    engine = client.app[INBOUND_LOG]._engine
    table = InboundMessage.__table__
    async with engine.connect() as conn:
        return (await conn.execute(select(table).where(table.c.dedupe_key == key))).all()


# --------------------------------------------------------------------------- 14: a stalled database


async def test_a_stalled_claim_is_answered_success_by_the_deadline_and_delivered_late(
    make_client, conversation, fake_api, db_url
):
    """The claim cannot be written before the deadline: the webhook answers `success`
    while the lock is still held, and the message is handled once the database is back,
    its answer going by the customer-service API."""
    client = await make_client(options=WeChatOptions(reply_deadline=0.5, cs_backoff=0.01))
    xml = wechat_text(OPENID, "积分", msg_id="9401")
    async with database_held(db_url):
        started = time.perf_counter()
        resp = await asyncio.wait_for(post(client, plain(xml)), 10)
        assert await resp.text() == "success"  # answered while the lock is still held
        took = time.perf_counter() - started
        assert conversation.calls == []  # the claim is still waiting for the database
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    assert [s["text"]["content"] for s in fake_api.sent] == ["echo:积分"]
    assert len(conversation.calls) == 1
    [row] = await rows(client, f"msg:{OPENID}:9401")
    assert (row.status, row.reply_text) == ("sent", "echo:积分")
    retry = await post(client, plain(xml))  # a copy after all that: no second effect
    assert await retry.text() == "success"
    assert len(conversation.calls) == 1 and len(fake_api.sent) == 1
    print(f"answered after {took:.2f} s with the database held")  # noqa: T201


async def test_a_stalled_deferred_record_does_not_hold_the_answer(
    make_client, conversation, fake_api, db_url
):
    """The handler misses the deadline and the `deferred` record cannot be written: the
    webhook still answers at the deadline; the answer goes late once the database is back."""
    client = await make_client(options=WeChatOptions(reply_deadline=0.5, cs_backoff=0.01))
    conversation.gate = asyncio.Event()
    request = asyncio.ensure_future(post(client, plain(wechat_text(OPENID, "积分", msg_id="9402"))))
    await conversation.started.wait()  # claimed: the handler runs
    async with database_held(db_url):
        resp = await asyncio.wait_for(request, 10)
        assert await resp.text() == "success"
        conversation.gate.set()
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    assert [s["text"]["content"] for s in fake_api.sent] == ["echo:积分"]
    [row] = await rows(client, f"msg:{OPENID}:9402")
    assert row.status == "sent"


# --------------------------------------------------------------------------- 26: leases


@pytest.fixture
def release_fails(monkeypatch):
    """Releasing a claim fails (the holder lost its database connection)."""

    async def broken(self, claim, *, fresh=False):
        raise ConnectionError("another operation is in progress")

    monkeypatch.setattr(InboundStore, "_delete", broken)
    monkeypatch.setattr("bot.inbound_store.RELEASE_BACKOFF", 0.01)


async def test_a_claim_whose_release_failed_is_taken_over_after_its_lease(
    make_client, release_fails, fake_api
):
    conv = FakeConversation(fail=True)
    client = await make_client(conv=conv, options=WeChatOptions(reply_deadline=0.3))
    client.app[INBOUND_LOG].lease_margin = 0.5
    xml = wechat_text(OPENID, "兑换 1", msg_id="9501")
    assert (await post(client, plain(xml))).status == 500
    [row] = await rows(client, f"msg:{OPENID}:9501")
    assert row.status == "processing"  # the release failed: the row stays claimed
    conv.fail = False
    await asyncio.sleep(0.9)  # the lease (deadline + 0.5 s) runs out
    retry = await post(client, plain(xml))
    assert reply_fields(await retry.text())["Content"] == "echo:兑换 1"
    assert len(conv.calls) == 2
    await client.app[INBOUND_LOG].settle()
    [row] = await rows(client, f"msg:{OPENID}:9501")
    assert (row.status, row.reply_text) == ("answered", "echo:兑换 1")


async def test_a_retry_within_the_lease_takes_the_message_over_behind_its_answer(
    make_client, release_fails, fake_api
):
    """The retry finds the claim still live: it answers `success` by its deadline (the
    holder might be alive) and goes on waiting; when the lease runs out it handles the
    message and sends the answer by the API — even if WeChat never retries again."""
    conv = FakeConversation(fail=True)
    client = await make_client(conv=conv, options=WeChatOptions(reply_deadline=0.3))
    client.app[INBOUND_LOG].lease_margin = 0.5
    xml = wechat_text(OPENID, "兑换 1", msg_id="9503")
    assert (await post(client, plain(xml))).status == 500
    conv.fail = False
    early = await post(client, plain(xml))
    assert await early.text() == "success"
    assert len(conv.calls) == 1  # within the lease: not taken over yet
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    assert [s["text"]["content"] for s in fake_api.sent] == ["echo:兑换 1"]
    assert len(conv.calls) == 2
    [row] = await rows(client, f"msg:{OPENID}:9503")
    assert row.status == "sent"
    again = await post(client, plain(xml))
    assert await again.text() == "success"
    assert len(conv.calls) == 2 and len(fake_api.sent) == 1


async def test_a_release_that_failed_on_its_connection_is_retried_on_a_fresh_one(
    engine, monkeypatch
):
    store = InboundStore(engine)
    if store.raw is None:
        pytest.skip("the raw driver's connections")
    from models.types import utcnow

    claim = await store.claim("wechat", "k", utcnow())
    usual_write = type(store.raw).write

    async def write(self, sql, *args, key=None):
        if sql.startswith("DELETE"):
            raise ConnectionError("another operation is in progress")
        return await usual_write(self, sql, *args, key=key)

    monkeypatch.setattr(type(store.raw), "write", write)
    monkeypatch.setattr("bot.inbound_store.RELEASE_BACKOFF", 0.01)
    assert await store.release(claim)
    assert await store.read("wechat", "k") is None


async def test_a_live_holder_is_not_taken_over(make_client, conversation, fake_api):
    """The lease outlasts the holder's own deadline: a copy at another replica that waits
    longer than that finds the message handed to the late path, never up for grabs."""
    client = await make_client(options=WeChatOptions(reply_deadline=1.0))
    client.app[INBOUND_LOG].lease_margin = 0.2
    other_conv = FakeConversation()
    other = await make_client(conv=other_conv, options=WeChatOptions(reply_deadline=2.0))
    conversation.gate = asyncio.Event()
    xml = wechat_text(OPENID, "兑换 1", msg_id="9502")
    first = asyncio.ensure_future(post(client, plain(xml)))
    await conversation.started.wait()
    copy = await post(other, plain(xml))  # polls past the holder's deadline
    assert await copy.text() == "success"
    assert await (await first).text() == "success"  # the holder missed its deadline
    conversation.gate.set()
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    assert other_conv.calls == [] and len(conversation.calls) == 1
    assert len(fake_api.sent) == 1


async def test_a_late_write_of_a_robbed_holder_changes_nothing(engine):
    """The fence: once a claim was taken over, the old holder's record does not apply."""
    store = InboundStore(engine)
    from models.types import utcnow

    old = await store.claim("wechat", "k", utcnow())
    seen = await store.read("wechat", "k")
    assert seen is not None and seen.expired(utcnow())
    new = await store.take_over(seen, utcnow())
    assert new is not None and new.id == old.id
    assert await store.take_over(seen, utcnow()) is None  # only one retry wins
    await store.record(old, "answered", "stale")
    await store.record(new, "answered", "fresh")
    assert (await store.read("wechat", "k")).text == "fresh"
    await store.record(old, "failed", None)
    assert (await store.read("wechat", "k")).status == "answered"


# --------------------------------------------------------------------------- 29: a flood


class BusyConversation(FakeConversation):
    """Each answer waits for the database three times and keeps the event loop busy for
    a few milliseconds after each (rules, rendering): a flood of them overloads the
    process — 400 of them are more work than it can do in the 4-second deadline."""

    async def handle(self, inbound):
        self.calls.append(inbound)
        for _ in range(3):
            await asyncio.sleep(0.02)
            time.sleep(0.003)  # noqa: ASYNC251 — work that holds the event loop
        return Reply(f"echo:{inbound.text}")


FLOOD_CLIENT = """
import asyncio, json, sys, time
import aiohttp

async def main():
    url, requests = json.load(sys.stdin)

    async def one(session, query, body):
        started = time.monotonic()
        async with session.post(url, params=query, data=body.encode()) as resp:
            text = await resp.text()
        return time.monotonic() - started, resp.status, text

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(one(session, q, b) for q, b in requests))
    json.dump(results, sys.stdout)

asyncio.run(main())
"""


async def flood(url: str, requests: list[tuple[dict, bytes]]) -> list[tuple[float, int, str]]:
    """Send every request at once from another process (an outside client); per request:
    seconds to the answer as that client saw them, status, body."""
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FLOOD_CLIENT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    payload = json.dumps([url, [(q, b.decode()) for q, b in requests]]).encode()
    out, _ = await client.communicate(payload)
    assert client.returncode == 0
    return [tuple(r) for r in json.loads(out)]


async def test_a_flood_is_answered_in_time_with_one_effect_and_one_answer_each(
    make_settings, fake_api
):
    """600 signed messages at once at one process, served as `memberbot serve` serves
    (its listen backlog), from an outside client: every answer within WeChat's 5 s at
    that client, each message handled once and answered once (passively or late)."""
    conv = BusyConversation()
    settings = make_settings(wechat=wechat_settings(aes_key="", api_base_url=fake_api.base_url))
    app = create_app(settings, conversation=conv)
    app[WECHAT_OPTIONS] = WeChatOptions()  # the real timings
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=LISTEN_BACKLOG)  # as `serve` does
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/wechat"
    try:
        await _flood_checks(app, conv, url, fake_api)
    finally:
        await runner.cleanup()


async def _flood_checks(app, conv, url, fake_api) -> None:
    count = 600
    requests = [
        plain(wechat_text(f"o_flood_{n:04d}", f"m{n}", msg_id=str(9_900_000 + n)))
        for n in range(count)
    ]
    results = await flood(url, requests)
    times = sorted(t for t, _, _ in results)
    print(f"flood: median {times[count // 2]:.2f} s, max {times[-1]:.2f} s")  # noqa: T201
    assert {status for _, status, _ in results} == {200}
    assert times[-1] < 5.0, times[-20:]  # WeChat gives up after 5 s
    passive = {}
    for (_, _, text), n in zip(results, range(count), strict=True):
        if text != "success":
            passive[f"o_flood_{n:04d}"] = reply_fields(text)["Content"]
    late_count = count - len(passive)
    await fake_api.wait_sent(late_count, within=60)
    await app[INBOUND_LOG].drain(within=30)
    late = {s["touser"]: s["text"]["content"] for s in fake_api.sent}
    assert len(fake_api.sent) == late_count  # nobody got a passive and a late answer
    answers = passive | late
    assert answers == {f"o_flood_{n:04d}": f"echo:m{n}" for n in range(count)}
    assert sorted(i.sender for i in conv.calls) == sorted(answers)  # one effect each


async def test_the_loop_lag_is_measured():
    lag = LoopLag(interval=0.01)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # noqa: ASYNC251 — the loop is held: callbacks wait
        await asyncio.sleep(0.03)
        assert lag.lag >= 0.1
    finally:
        lag.stop()


async def test_time_spent_queued_counts_against_the_deadline(
    make_client, conversation, monkeypatch
):
    """A request that waited for the loop before its handler ran has less time left."""
    monkeypatch.setattr(LoopLag, "lag", property(lambda self: 0.4))  # the loop's queue
    client = await make_client(options=WeChatOptions(reply_deadline=0.6))
    conversation.gate = asyncio.Event()
    started = time.perf_counter()
    resp = await post(client, plain(wechat_text(OPENID, "积分", msg_id="9601")))
    assert await resp.text() == "success"
    assert time.perf_counter() - started < 0.5  # 0.6 s after it arrived, 0.4 s ago
    conversation.gate.set()


async def test_a_handler_slot_is_given_back_when_done_or_after_its_hold_limit():
    slots = HandlerSlots(1, hold_max=0.2)
    await slots.acquire()
    done = slots.start(lambda: asyncio.sleep(0))
    assert slots.full()
    await done
    await asyncio.sleep(0)  # its done callbacks
    assert not slots.full()
    await slots.acquire()
    stuck = slots.start(asyncio.Event().wait)  # never answers
    assert slots.full()
    await asyncio.wait_for(slots.acquire(), 2)  # freed by the hold limit
    assert not stuck.done()
    stuck.cancel()


async def test_a_copy_waiting_at_another_replica_handles_a_message_whose_holder_failed(db_url):
    """The holder's handler fails and its claim is released while a copy at another
    process waits: the copy claims the message afresh and answers it."""
    from bot.inbound_log import InboundLog
    from models.db import make_engine

    engines = [make_engine(db_url), make_engine(db_url)]
    try:
        first, second = (InboundLog(e) for e in engines)
        loop = asyncio.get_running_loop()
        gate = asyncio.Event()

        async def broken() -> Reply:
            await gate.wait()
            raise RuntimeError("the conversation broke")

        async def fine() -> Reply:
            return Reply("ok")

        holder = asyncio.ensure_future(
            first.respond_once("wechat", "msg:9701", broken, deadline=loop.time() + 5)
        )
        await asyncio.sleep(0.2)  # claimed by the first
        copy = asyncio.ensure_future(
            second.respond_once("wechat", "msg:9701", fine, deadline=loop.time() + 5)
        )
        await asyncio.sleep(0.2)  # the copy polls
        gate.set()
        with pytest.raises(HandlingFailed):
            await holder
        assert (await copy).text == "ok"
    finally:
        for e in engines:
            await e.dispose()
