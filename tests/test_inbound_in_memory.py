"""An in-memory SQLite database (a `database.url` the settings accept) runs the same
statements as a file or PostgreSQL: through the engine's own connection
(`models.rawdb_sqlite.EngineRaw`), since no second connection can see it."""

from __future__ import annotations

import asyncio

import pytest

from bot.channels.wechat_replay import ReplayMemory
from bot.conversation import Reply
from bot.inbound_log import InboundLog
from bot.inbound_outcome import HandlingFailed
from models import rawdb
from models.db import make_engine, migrate
from models.rawdb_sqlite import EngineRaw
from tests.test_inbound_log import each_message_once


@pytest.fixture
async def memory_engine():
    engine = make_engine("sqlite+aiosqlite://")
    await migrate(engine)
    yield engine
    await engine.dispose()


async def test_each_message_once_with_its_stored_answer(memory_engine):
    assert isinstance(rawdb.for_engine(memory_engine), EngineRaw)
    rows = await each_message_once(memory_engine, 10)
    assert len(rows) == 10
    assert {r.status for r in rows} == {"answered"}
    # A later retry (another process's, say) reads the stored answer: no second effect.
    called: list[str] = []

    async def second_effect() -> Reply:
        called.append("x")
        return Reply("x")

    fresh = InboundLog(memory_engine)
    loop = asyncio.get_running_loop()
    again = await fresh.respond_once("wechat", "msg:3", second_effect, deadline=loop.time() + 5)
    assert again.text == "answer msg:3"
    assert called == []


async def test_a_failed_handler_is_released_and_retried(memory_engine):
    inbound_log = InboundLog(memory_engine)
    loop = asyncio.get_running_loop()

    async def broken() -> Reply:
        raise RuntimeError("boom")

    async def fine() -> Reply:
        return Reply("ok")

    with pytest.raises(HandlingFailed):
        await inbound_log.respond_once("sms", "k", broken, deadline=loop.time() + 5)
    outcome = await inbound_log.respond_once("sms", "k", fine, deadline=loop.time() + 5)
    assert outcome.text == "ok"


async def test_a_signed_url_keeps_its_first_body(memory_engine):
    memory = ReplayMemory(memory_engine, max_age=300)
    assert await memory.first_body("url", "body-a", 1_000)
    assert await memory.first_body("url", "body-a", 1_000)  # a resend
    assert not await memory.first_body("url", "body-b", 1_000)
