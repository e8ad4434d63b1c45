"""The WeChat reply deadline holds whatever the database does (a held lock), a claim
whose holder failed is taken over once its lease expires, and a flood of requests is
answered in time with one effect and one answer each."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import pytest
from sqlalchemy import select

from bot.appkeys import INBOUND_LOG
from bot.channels.wechat import WeChatOptions
from bot.inbound_store import InboundStore
from models.tables import InboundMessage
from tests import test_wechat
from tests.conftest import is_pg
from tests.payloads import plain, reply_fields, wechat_text
from tests.test_wechat import OPENID, FakeConversation, post

# the webhook tests' fixtures
conversation, fake_api, make_client = (
    test_wechat.conversation,
    test_wechat.fake_api,
    test_wechat.make_client,
)


@contextlib.asynccontextmanager
async def database_held(db_url: str):
    """Another connection holds the database's write lock (SQLite) or an exclusive lock
    on `inbound_messages` (PostgreSQL) until the block ends."""
    if is_pg():
        import asyncpg

        conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE inbound_messages IN ACCESS EXCLUSIVE MODE")
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
    [row] = await rows(client, "msg:9401")
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
    [row] = await rows(client, "msg:9402")
    assert row.status == "sent"


# --------------------------------------------------------------------------- 26: leases


@pytest.fixture
def release_fails(monkeypatch):
    """Releasing a claim fails (the holder lost its database connection)."""

    async def broken(self, claim):
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
    [row] = await rows(client, "msg:9501")
    assert row.status == "processing"  # the release failed: the row stays claimed
    conv.fail = False
    early = await post(client, plain(xml))  # within the lease: the holder may be alive
    assert await early.text() == "success"
    assert len(conv.calls) == 1
    await asyncio.sleep(0.6)  # the lease (deadline + 0.5 s) runs out
    retry = await post(client, plain(xml))
    assert reply_fields(await retry.text())["Content"] == "echo:兑换 1"
    assert len(conv.calls) == 2
    await client.app[INBOUND_LOG].settle()
    [row] = await rows(client, "msg:9501")
    assert (row.status, row.reply_text) == ("answered", "echo:兑换 1")


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
