"""A bound member's "积分" over the real WeChat webhook, answered without a claim.

`InboundLog.respond_once(quick=…)` asks `MemberBot.quick` first: one read gives the
answer and shows that the inbound log does not have the message yet; the answer is
stored behind the reply with no `processing` claim before it. These tests check what
that must keep: a retry gets the stored answer (even when the data changed since), a
message another request or replica is handling is never answered on the side, and
concurrent copies share one answer and one row.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert, select

from bot import quick
from bot.app import create_app
from bot.appkeys import INBOUND_LOG
from bot.channels.wechat import WECHAT_OPTIONS, WeChatOptions
from bot.inbound_log import InboundLog
from models import rawdb, rawdb_pg
from models.tables.inbound import InboundMessage
from models.tiers import facts
from models.types import utcnow
from tests.conftest import API_KEY, is_pg
from tests.payloads import (
    WECHAT_AES_KEY,
    aes,
    decrypt_reply,
    plain,
    reply_fields,
    wechat_settings,
    wechat_text,
)

PHONE = "+8613800138000"
OPENID = "o_member_quick"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TABLE = InboundMessage.__table__


async def purchase(client, receipt: str, amount: str) -> None:
    body = {
        "receipt_no": receipt, "phone": PHONE, "store": "S001", "assistant": "A001",
        "amount": amount, "at": "2026-11-20T15:00:00+08:00",
    }  # fmt: skip
    resp = await client.post("/api/purchases", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()


@pytest.fixture
def build(request, aiohttp_client, make_settings):
    # An AES key makes safe mode the only mode: a plain test's app has none.
    aes_mode = (
        getattr(request.node, "callspec", None)
        and request.node.callspec.params.get("mode") == "aes"
    )

    async def make(options: WeChatOptions | None = None):
        settings = make_settings(wechat=wechat_settings(aes_key=WECHAT_AES_KEY if aes_mode else ""))
        app = create_app(settings)
        app[WECHAT_OPTIONS] = options or WeChatOptions()
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def client(build):
    client = await build()
    for path, body in (
        ("/api/stores", {"code": "S001", "name": "南京西路店", "city": "上海"}),
        ("/api/assistants", {"code": "A001", "name": "王丽", "store": "S001"}),
        ("/api/members", {"phone": PHONE, "name": "张三", "store": "S001",
                          "assistant": "A001", "wechat_openid": OPENID}),
    ):  # fmt: skip
        resp = await client.post(path, json=body, headers=AUTH)
        assert resp.status in (200, 201), await resp.text()
    await purchase(client, "R1", "3500.00")
    return client


async def ask(client, msg_id: str, *, mode: str = "plain", text: str = "积分") -> str:
    """The Content of the bot's passive reply, or the raw body when it is not XML."""
    xml = wechat_text(OPENID, text, msg_id=msg_id)
    query, data = aes(xml) if mode == "aes" else plain(xml)
    resp = await client.post("/wechat", params=query, data=data)
    body = await resp.text()
    assert resp.status == 200, body
    if body == "success":
        return body
    return reply_fields(decrypt_reply(body) if mode == "aes" else body)["Content"]


async def rows(client, msg_id: str) -> list:
    engine = client.app[INBOUND_LOG]._engine
    async with engine.connect() as conn:
        stmt = select(TABLE).where(TABLE.c.dedupe_key == f"msg:{OPENID}:{msg_id}")
        return list((await conn.execute(stmt)).all())


@pytest.mark.parametrize("mode", ["plain", "aes"])
async def test_points_are_answered_and_stored_without_a_claim(client, monkeypatch, mode):
    async def no_claim(self, channel, key):
        raise AssertionError(f"claimed {key}: the quick path takes no claim")

    monkeypatch.setattr(InboundLog, "_claim", no_claim)
    answer = await ask(client, "7001", mode=mode)
    assert "3,500" in answer and "张三" in answer, answer
    await client.app[INBOUND_LOG].settle()
    [row] = await rows(client, "7001")
    assert (row.status, row.reply_text) == ("answered", answer)
    assert row.answered_at is not None


async def test_a_retry_gets_the_stored_answer_even_after_the_data_changed(client):
    first = await ask(client, "7002")
    await client.app[INBOUND_LOG].settle()
    await purchase(client, "R2", "100.00")  # the balance is 3,600 from now on
    assert await ask(client, "7002") == first  # WeChat's retry of the same message
    fresh = await ask(client, "7003")
    assert "3,600" in fresh and "3,500" in first, (first, fresh)


async def test_a_message_another_replica_is_handling_is_not_answered_on_the_side(build, client):
    """The key is `processing` (claimed elsewhere): the request waits for that answer —
    here until its deadline, answering `success` — and never computes its own."""
    quick = await build(WeChatOptions(reply_deadline=0.3))
    engine = client.app[INBOUND_LOG]._engine
    async with engine.begin() as conn:
        await conn.execute(
            insert(TABLE).values(
                channel="wechat",
                dedupe_key=f"msg:{OPENID}:7004",
                status="processing",
                created_at=utcnow(),
            )
        )
    assert await ask(quick, "7004") == "success"
    async with engine.begin() as conn:
        await conn.execute(
            TABLE.update()
            .where(TABLE.c.dedupe_key == f"msg:{OPENID}:7004")
            .values(status="answered", reply_text="elsewhere", answered_at=utcnow())
        )
    assert await ask(quick, "7004") == "elsewhere"


async def test_concurrent_copies_share_one_answer_and_one_row(client):
    answers = await asyncio.gather(*(ask(client, "7005") for _ in range(5)))
    assert len(set(answers)) == 1 and "3,500" in answers[0], answers
    await client.app[INBOUND_LOG].settle()
    assert len(await rows(client, "7005")) == 1


async def test_concurrent_messages_of_one_member_are_each_answered_and_stored(client):
    """On PostgreSQL the reads of concurrent messages go in one statement: two keys of
    one openid in the same batch are told apart."""
    ids = [f"80{n:02d}" for n in range(8)]
    answers = await asyncio.gather(*(ask(client, i) for i in ids))
    assert all("3,500" in a for a in answers), answers
    await client.app[INBOUND_LOG].settle()
    for i in ids:
        [row] = await rows(client, i)
        assert row.reply_text == answers[0]


async def test_other_keywords_still_go_through_the_claim(client, monkeypatch):
    claimed: list[str] = []
    claim = InboundLog._claim

    async def spy(self, channel, key):
        claimed.append(key)
        return await claim(self, channel, key)

    monkeypatch.setattr(InboundLog, "_claim", spy)
    await ask(client, "7006", text="兑换 1")  # asks for a confirmation: a write
    await ask(client, "7007")  # 积分 with that confirmation pending: it is cancelled
    assert claimed == [f"msg:{OPENID}:7006", f"msg:{OPENID}:7007"]


async def test_a_retry_and_a_new_message_read_together_are_told_apart(client):
    """A retry (key stored) and a new message of the same member at once: on PostgreSQL
    one statement reads both; the retry gets the stored answer, the new one fresh data."""
    old = await ask(client, "8100")
    await client.app[INBOUND_LOG].settle()
    await purchase(client, "R3", "100.00")
    for _ in range(3):
        retry, new = await asyncio.gather(ask(client, "8100"), ask(client, f"81{_:02d}1"))
        assert retry == old and "3,600" in new, (retry, new)


@pytest.mark.skipif(not is_pg(), reason="PostgreSQL's plan cache")
async def test_the_key_lookup_stays_a_lookup_when_planned_on_an_empty_log(settings, db_url):
    """The raw pool runs the quick read as a cached generic plan. Planned while
    `inbound_messages` looked empty (a fresh install), `dedupe_key = ANY(keys)` became a
    scan of every message of the channel with a filter — for every read, as the log
    grew (seen in the benchmark: 290 µs of PostgreSQL CPU per message instead of 40).
    With the raw pool's settings, each key must be looked up by both index columns."""
    import asyncpg

    sql, names = rawdb.compiled(facts.sender_read("postgresql", False), "postgresql")
    days = ("today", "start", "today", "start", "today", "today")
    assert names == (*days, "keys", "openids"), names
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn, server_settings=rawdb_pg.MAIN_SETTINGS)
    try:
        await conn.execute("ANALYZE inbound_messages")  # empty: what a fresh install has
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE facts AS {rawdb_pg.numbered(sql)}")
        rows = await conn.fetch(
            "EXPLAIN EXECUTE facts('2026-12-01', '2026-06-01', '2026-12-01', '2026-06-01',"
            " '2026-12-01', '2026-12-01',"
            " ARRAY['msg:1', 'msg:2'], ARRAY['o_1', 'o_2'])"
        )
    finally:
        await conn.close()
    plan = [r[0] for r in rows]
    scans = [n for n, line in enumerate(plan) if "on inbound_messages" in line]
    assert scans, plan
    for n in scans:
        assert "Seq Scan" not in plan[n], "\n".join(plan)
        details = " ".join(plan[n + 1 : n + 3])
        assert "Index Cond" in details and "dedupe_key" in details.split("Filter")[0], plan
        assert "Filter" not in details, "\n".join(plan)


async def test_a_batched_read_gives_each_message_its_own_row(settings, engine, sessions):
    """70 reads at once (three SQLite statements of at most 32 pairs): the same openid
    with different keys, an unknown openid, a key the log has — each item gets what it
    gets when read alone."""
    from datetime import date, timedelta

    from models.db import transaction
    from models.tables.members import Identity
    from tests.factories import make_member, make_store

    async with transaction(sessions) as s:
        m = await make_member(s, phone=PHONE, store=await make_store(s))
        s.add(Identity(member_id=m.id, channel="wechat", address=OPENID))
        s.add(Identity(member_id=None, channel="wechat", address="o_unbound"))
    async with engine.begin() as conn:
        await conn.execute(
            insert(TABLE).values(
                channel="wechat", dedupe_key="msg:seen", status="answered", created_at=utcnow()
            )
        )
    reader = quick.QuickPoints(settings, rawdb.for_engine(engine), touch_every=timedelta(0))
    today = date(2026, 11, 25)
    items = [(OPENID, today, f"msg:{n}") for n in range(66)]
    items += [
        (OPENID, today, "msg:seen"),
        ("o_unbound", today, "msg:u"),
        ("o_never", today, "msg:n"),
    ]
    items += [(OPENID, today, None)]
    together = await reader._read_many(items)
    alone = [(await reader._read_many([item]))[0] for item in items]
    assert together == alone
    assert [row is None for row in together].count(True) == 1  # o_never
    assert [bool(row[18]) for row in together if row is not None].count(True) == 1


@pytest.mark.skipif(is_pg(), reason="SQLite's query plan")
@pytest.mark.parametrize("pairs", [1, quick.SQLITE_BATCH])
async def test_the_sqlite_batch_looks_each_openid_and_key_up(settings, engine, pairs):
    """The (openid, key) rows drive the read: each identity and each key is found by its
    unique index, never by scanning the table (a fresh database has no statistics)."""
    import sqlite3
    from datetime import timedelta

    reader = quick.QuickPoints(settings, rawdb.for_engine(engine), touch_every=timedelta(0))
    sql = reader._sqlite_text(pairs)
    conn = sqlite3.connect(engine.url.database)
    try:
        args = ["o", "k"] * pairs + ["2026-12-01"] * len(reader._names)  # the days
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    finally:
        conn.close()
    assert "SCAN w" in plan, plan
    assert any(p.startswith("SEARCH i ") and "(channel=? AND address=?)" in p for p in plan), plan
    assert any(p.startswith("SEARCH d ") and "(channel=? AND dedupe_key=?)" in p for p in plan), (
        plan
    )
    assert not any(
        p.startswith("SCAN") and p not in ("SCAN w",) and "CONSTANT" not in p for p in plan
    ), plan
