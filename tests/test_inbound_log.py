"""The inbound log on its own: group commit, one winner per key, stored answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select

from bot.conversation import Reply
from bot.group_commit import GroupWriter
from bot.inbound_log import HandlingFailed, InboundLog, prune
from models.tables import InboundMessage


async def test_writes_that_arrive_during_a_flush_go_together_in_the_next():
    batches: list[list[int]] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        started.set()
        if len(batches) == 1:
            await release.wait()
        return [i * 10 for i in items]

    writer: GroupWriter[int, int] = GroupWriter(flush)
    first = asyncio.ensure_future(writer.submit(1))
    await started.wait()  # the first flush is under way
    rest = asyncio.gather(*(writer.submit(i) for i in (2, 3, 4)))
    await asyncio.sleep(0)  # one loop turn: the three submit tasks run up to their wait
    release.set()
    assert await first == 10
    assert await rest == [20, 30, 40]
    assert batches == [[1], [2, 3, 4]]


async def test_a_failed_flush_fails_its_batch_only():
    calls = 0

    async def flush(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database down")
        return items

    writer: GroupWriter[str, str] = GroupWriter(flush)
    with pytest.raises(RuntimeError, match="database down"):
        await writer.submit("a")
    assert await writer.submit("b") == "b"


async def test_many_messages_at_once_each_handled_once_with_its_own_answer(engine):
    inbound_log = InboundLog(engine)
    calls: list[str] = []

    async def answer(key: str) -> Reply:
        calls.append(key)
        await asyncio.sleep(0)
        return Reply(f"answer {key}")

    loop = asyncio.get_running_loop()
    keys = [f"msg:{i}" for i in range(30)] * 2  # every message twice, all at once
    outcomes = await asyncio.gather(
        *(
            inbound_log.respond_once("wechat", k, lambda k=k: answer(k), deadline=loop.time() + 5)
            for k in keys
        )
    )
    assert [o.text for o in outcomes] == [f"answer {k}" for k in keys]
    assert sorted(calls) == sorted(set(keys))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(InboundMessage.__table__))).all()
    assert len(rows) == 30
    assert {r.status for r in rows} == {"answered"}
    assert all(r.answered_at is not None for r in rows)


async def test_the_same_key_on_two_channels_is_two_messages(engine):
    inbound_log = InboundLog(engine)
    loop = asyncio.get_running_loop()

    async def reply() -> Reply:
        return Reply("hi")

    a = await inbound_log.respond_once("wechat", "k1", reply, deadline=loop.time() + 5)
    b = await inbound_log.respond_once("sms", "k1", reply, deadline=loop.time() + 5)
    assert a.kind == b.kind == "answered"


async def test_a_failed_first_try_is_forgotten(engine):
    inbound_log = InboundLog(engine)
    loop = asyncio.get_running_loop()

    async def broken() -> Reply:
        raise ValueError("boom")

    with pytest.raises(HandlingFailed):
        await inbound_log.respond_once("sms", "k2", broken, deadline=loop.time() + 5)

    async def fine() -> Reply:
        return Reply("ok")

    outcome = await inbound_log.respond_once("sms", "k2", fine, deadline=loop.time() + 5)
    assert outcome.text == "ok"


async def test_prune_forgets_only_old_messages(engine):
    table = InboundMessage.__table__
    async with engine.begin() as conn:
        await conn.execute(
            insert(table),
            [
                {
                    "channel": "wechat",
                    "dedupe_key": "old",
                    "status": "answered",
                    "created_at": datetime(2026, 10, 1, tzinfo=UTC),
                },
                {
                    "channel": "wechat",
                    "dedupe_key": "new",
                    "status": "answered",
                    "created_at": datetime(2026, 11, 2, tzinfo=UTC),
                },
            ],
        )
    assert await prune(engine, before=datetime(2026, 11, 1, tzinfo=UTC)) == 1
    async with engine.connect() as conn:
        keys = [r.dedupe_key for r in await conn.execute(select(table.c.dedupe_key))]
    assert keys == ["new"]
