"""The request id reaches the outbox rows its work creates (`models.context`): an API
request's id (haproxy's X-Request-Id or the one the bot made), a daily run's own id
("daily-…", shared by all its rows and different from the next run's), a CLI command's
("cli-<command>-…": tests/test_greet_cli.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from models.db import transaction
from models.tables.outbox import OutboxMessage
from scheduler.jobs import run_daily
from tests.test_greetings_api import NOON, _client, call, clock, rows, seed  # noqa: F401
from tests.test_jobs import DAY, NOW, member, shop


async def test_an_api_request_id_is_on_the_message_it_queued(
    aiohttp_client, make_settings, sessions, clock  # noqa: F811
):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    body = {"member": "13800138000", "occasion": "birthday"}
    status, data, resp = await call(client, body, tokens["A001"], {"X-Request-Id": "lb-7f3a.1"})
    assert status == 202, data
    assert resp.headers["X-Request-Id"] == "lb-7f3a.1"
    (row,) = await rows(sessions, kind="personal_greeting")
    assert row.request_id == "lb-7f3a.1"

    # without a header the bot's own id, the one it answered with
    body = {"member": "13800138001", "occasion": "birthday"}
    status, data, resp = await call(client, body, tokens["A002"])
    assert status == 202, data
    second = (await rows(sessions, kind="personal_greeting"))[-1]
    assert second.request_id == resp.headers["X-Request-Id"] != "lb-7f3a.1"


async def test_a_daily_run_stamps_its_rows_with_one_id_of_its_own(sessions, settings):
    async with transaction(sessions) as s:
        store, a, _ = await shop(s)
        await member(s, store, a, birthday_month=4, birthday_day=1)
        await member(s, store, a, birthday_month=4, birthday_day=1)
        await member(s, store, a, birthday_month=4, birthday_day=2)
    assert (await run_daily(sessions, settings=settings, day=DAY, now=NOW)).queued == 2
    nxt = DAY + timedelta(days=1)
    assert (await run_daily(sessions, settings=settings, day=nxt, now=NOW + timedelta(1))).queued
    async with sessions() as s:
        msgs = (await s.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    ids = [m.request_id for m in msgs]
    assert len(ids) == 3 and all(i and i.startswith("daily-") for i in ids)
    assert ids[0] == ids[1] != ids[2]
