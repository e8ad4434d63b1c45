"""The inbound log on its own: group commit, one winner per key, stored answers."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select

from bot import eager
from bot.conversation import Reply
from bot.inbound_log import InboundLog
from bot.inbound_outcome import HandlingFailed
from models import rawdb
from models.db import make_engine
from models.group_commit import GroupWriter, WriteQueue
from models.inbound import prune
from models.tables.inbound import InboundMessage


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


async def each_message_once(engine, n: int) -> list:
    """`n` messages, each delivered twice at once: each is answered once, every
    delivery gets its message's answer, and the answers are stored (the rows)."""
    inbound_log = InboundLog(engine)
    calls: list[str] = []

    async def answer(key: str) -> Reply:
        calls.append(key)
        await asyncio.sleep(0)
        return Reply(f"answer {key}")

    loop = asyncio.get_running_loop()
    keys = [f"msg:{i}" for i in range(n)] * 2
    outcomes = await asyncio.gather(
        *(
            inbound_log.respond_once("wechat", k, lambda k=k: answer(k), deadline=loop.time() + 5)
            for k in keys
        )
    )
    assert [o.text for o in outcomes] == [f"answer {k}" for k in keys]
    assert sorted(calls) == sorted(set(keys))
    await inbound_log.settle()  # the answers are stored behind the replies
    async with engine.connect() as conn:
        rows = (await conn.execute(select(InboundMessage.__table__))).all()
    return rows


async def test_many_messages_at_once_each_handled_once_with_its_own_answer(engine):
    rows = await each_message_once(engine, 30)
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


# --------------------------------------------------------------------------- write-behind


async def test_a_write_queue_commits_added_and_submitted_items_together():
    batches: list[tuple[list[str], list[bool]]] = []

    async def flush(items: list[str], deferred: list[bool]) -> list[str]:
        batches.append((items, deferred))
        await asyncio.sleep(0)
        return [i.upper() for i in items]

    queue: WriteQueue[str, str] = WriteQueue(flush)
    queue.add("a")
    assert await queue.submit("b") == "B"  # went in the same batch as "a"
    assert batches == [(["a", "b"], [True, False])]
    queue.add("c")
    await queue.settle()
    assert batches[-1] == (["c"], [True])
    await queue.settle()  # nothing queued: returns at once


async def test_a_failed_batch_fails_its_submitted_items_and_settle():
    async def flush(items: list[str], deferred: list[bool]) -> list[str]:
        if "bad" in items:
            raise RuntimeError("database down")
        return items

    queue: WriteQueue[str, str] = WriteQueue(flush)
    queue.add("bad")
    with pytest.raises(RuntimeError):
        await queue.submit("x")
    queue.add("bad")
    with pytest.raises(RuntimeError):
        await queue.settle()
    assert await queue.submit("y") == "y"


async def test_an_answer_written_behind_is_what_another_replica_gets(db_url):
    """The answer is stored after the reply went out; a retry at another process that
    finds the row still `processing` waits for it, then gives the same answer."""
    first_engine, second_engine = make_engine(db_url), make_engine(db_url)
    try:
        first, second = InboundLog(first_engine), InboundLog(second_engine)
        loop = asyncio.get_running_loop()
        calls: list[str] = []

        async def answer() -> Reply:
            calls.append("first")
            return Reply("积分：1,007")

        async def never() -> Reply:
            raise AssertionError("a retry must not be handled again")

        outcome = await first.respond_once("wechat", "msg:1", answer, deadline=loop.time() + 5)
        retry = await second.respond_once("wechat", "msg:1", never, deadline=loop.time() + 5)
        assert outcome.text == retry.text == "积分：1,007"
        await first.settle()
        async with first_engine.connect() as conn:
            row = (await conn.execute(select(InboundMessage.__table__))).one()
        assert (row.status, row.reply_text) == ("answered", "积分：1,007")
        assert calls == ["first"]
    finally:
        await first_engine.dispose()
        await second_engine.dispose()


async def test_two_replicas_handle_each_of_many_concurrent_messages_once(db_url):
    engines = [make_engine(db_url), make_engine(db_url)]
    try:
        logs = [InboundLog(e) for e in engines]
        loop = asyncio.get_running_loop()
        calls: list[str] = []

        async def answer(key: str) -> Reply:
            calls.append(key)
            await asyncio.sleep(0.01)
            return Reply(f"answer {key}")

        keys = [f"msg:{i}" for i in range(40)]
        outcomes = await asyncio.gather(
            *(
                log.respond_once("wechat", k, lambda k=k: answer(k), deadline=loop.time() + 5)
                for k in keys
                for log in (*logs, *logs)  # every message twice at each replica
            )
        )
        assert sorted(calls) == sorted(keys)
        assert [o.text for o in outcomes] == [f"answer {k}" for k in keys for _ in range(4)]
    finally:
        for e in engines:
            await e.dispose()


async def test_a_locked_sqlite_database_is_waited_for_off_the_event_loop(db_url):
    """Another process holds the write lock: the claim waits on the worker thread while
    the event loop keeps serving, and goes through once the lock is released."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    engine = make_engine(db_url)
    other = sqlite3.connect(db_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    try:
        inbound_log = InboundLog(engine)
        loop = asyncio.get_running_loop()
        other.execute("BEGIN IMMEDIATE")
        loop.call_later(0.3, other.execute, "COMMIT")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        async def answer() -> Reply:
            return Reply("ok")

        beat = asyncio.ensure_future(ticker())
        started = loop.time()
        outcome = await inbound_log.respond_once("wechat", "k", answer, deadline=started + 5)
        beat.cancel()
        assert outcome.text == "ok"
        assert loop.time() - started >= 0.25  # it did wait for the lock
        assert ticks >= 10  # …without blocking the loop
        assert rawdb.for_engine(engine).fallbacks >= 1
    finally:
        other.close()
        await engine.dispose()


# --------------------------------------------------------------------------- eager start


async def test_a_handler_that_never_waits_runs_without_a_task():
    ran: list[str] = []

    async def instant() -> str:
        ran.append("now")
        return "done"

    future = eager.start(instant())
    assert ran == ["now"] and future.done() and future.result() == "done"
    assert not isinstance(future, asyncio.Task)

    async def broken() -> str:
        raise ValueError("boom")

    failed = eager.start(broken())
    assert isinstance(failed.exception(), ValueError)


async def test_a_handler_that_waits_goes_on_in_a_task_with_its_results_and_errors():
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[object] = []

    async def slow() -> str:
        seen.append(await gate)
        await asyncio.sleep(0)  # a bare yield
        try:
            await asyncio.get_running_loop().run_in_executor(None, _fail)
        except RuntimeError as exc:
            seen.append(str(exc))
        return "late"

    task = eager.start(slow())
    assert not task.done()
    gate.set_result(7)
    assert await task == "late"
    assert seen == [7, "worker failed"]


async def test_cancelling_the_task_cancels_what_the_handler_waits_for():
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def waits() -> None:
        try:
            await gate
        finally:
            cleaned.append("finally")

    task = eager.start(waits())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.cancelled() and cleaned == ["finally"]


def _fail() -> None:
    raise RuntimeError("worker failed")
