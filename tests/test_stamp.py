"""The sender's `last_inbound_at` stamp: one statement (`models.identities.STAMP`) on the
session path and, compiled, on the quick path's raw driver — both rewrite it only when
it is older than `stale`, so it only ever moves forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models import identities, rawdb
from models.db import transaction
from models.tables.members import Identity

OPENID = "o_stamp"
T = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def _session_stamp(engine, sessions, now: datetime, stale: datetime) -> None:
    async with transaction(sessions) as s:
        await identities.stamp(s, channel="wechat", address=OPENID, now=now, stale=stale)


async def _raw_stamp(engine, sessions, now: datetime, stale: datetime) -> None:
    raw = rawdb.for_engine(engine)
    if raw is None:
        pytest.skip("no raw driver for this database")
    d = raw.dialect
    values = {
        "b_now": rawdb.sql_time(now, d),
        "b_channel": "wechat",
        "b_address": OPENID,
        "b_stale": rawdb.sql_time(stale, d),
    }
    args = tuple(values[name] for name in identities.STAMP_ARGS)
    raw.defer(identities.stamp_text(d), args, OPENID)
    await raw.settle()


async def _read(sessions) -> datetime | None:
    async with transaction(sessions) as s:
        stmt = select(Identity.last_inbound_at).where(Identity.address == OPENID)
        return (await s.exec(stmt)).one()


@pytest.mark.parametrize("write", [_session_stamp, _raw_stamp], ids=["session", "raw"])
async def test_the_stamp_is_rewritten_only_when_older_than_stale(engine, sessions, write):
    async with transaction(sessions) as s:
        s.add(Identity(member_id=None, channel="wechat", address=OPENID, created_at=T))
    await write(engine, sessions, T, T - MINUTE)
    assert await _read(sessions) == T  # no stamp yet: written
    await write(engine, sessions, T + MINUTE / 2, T - MINUTE / 2)
    assert await _read(sessions) == T  # written within the last minute: kept
    await write(engine, sessions, T + 2 * MINUTE, T + MINUTE)
    assert await _read(sessions) == T + 2 * MINUTE  # older than a minute: rewritten
    await write(engine, sessions, T + MINUTE + MINUTE / 2, T + MINUTE / 2)
    assert await _read(sessions) == T + 2 * MINUTE  # a late write never moves it back
