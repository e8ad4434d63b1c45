"""The dormant greeting is due while it is owed, not only on the first day past 10 months.

DOMAIN.md §6: ``dormant`` is due on D when the last purchase is more than 10 calendar
months before D and no ``dormant`` was queued since that purchase. Explicit brand days;
the planner as the daily job runs it (`plan_day` + `save_plan`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from models.tables.members import Member
from scheduler.plan.occasion_due import dormant_query
from tests.conftest import is_pg
from tests.test_planner import (
    add_outbox,
    buy,
    kinds,
    member,
    of,
    one,
    outbox_rows,
    plan,
    plan_and_save,
    shop,
)


def dormant(planned, m) -> list[str]:
    return [p.occasion for p in of(planned, m) if p.kind == "dormant"]


async def test_a_member_imported_long_dormant_is_greeted_once(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, join_date=date(2023, 5, 1))
        await buy(session, m, date(2024, 3, 1))  # the imported sheet's last purchase
    go_live = date(2026, 12, 2)
    planned = await plan_and_save(sessions, settings, go_live)
    assert dormant(planned, m) == ["since:2024-03-01"]
    assert one(planned, m, "dormant").status == "queued"
    for n in (1, 2, 30):
        assert (
            dormant(await plan_and_save(sessions, settings, go_live + timedelta(days=n)), m) == []
        )
    assert [r.kind for r in await outbox_rows(sessions) if r.kind == "dormant"] == ["dormant"]


async def test_a_day_the_planner_did_not_run_is_caught_up_the_next_day(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper)
        await buy(session, m, date(2026, 1, 15))
    # 2026-11-16 is the first day past 10 months; the daily job did not run then (only a
    # dry run, which writes nothing): the next day it is still due.
    assert dormant(await plan(sessions, settings, date(2026, 11, 16)), m) == ["since:2026-01-15"]
    assert dormant(await plan(sessions, settings, date(2026, 11, 15)), m) == []
    planned = await plan_and_save(sessions, settings, date(2026, 11, 17))
    assert dormant(planned, m) == ["since:2026-01-15"]
    assert dormant(await plan_and_save(sessions, settings, date(2026, 11, 18)), m) == []


async def test_a_full_week_on_the_day_then_the_next_day(sessions, settings):
    """The first day falls in a week already at the cap: the greeting of the day is still
    queued (greetings due on their day are never capped), and it is not due again."""
    day = date(2026, 11, 16)
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper)
        await buy(session, m, date(2026, 1, 15))
        for i, ago in enumerate((1, 3)):
            await add_outbox(session, m, "care_d120", f"x:{i}", day - timedelta(days=ago))
    assert settings.messaging.weekly_cap == 2
    planned = await plan_and_save(sessions, settings, day)
    assert (one(planned, m, "dormant").status, one(planned, m, "dormant").reason) == (
        "queued",
        None,
    )
    assert kinds(await plan_and_save(sessions, settings, day + timedelta(days=1)), m) == []


async def test_a_suppressed_greeting_is_recorded_and_not_due_again(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, stopped=True)
        await buy(session, m, date(2025, 1, 15))
    planned = await plan_and_save(sessions, settings, date(2026, 12, 2))
    assert (one(planned, m, "dormant").status, one(planned, m, "dormant").reason) == (
        "suppressed",
        "stopped",
    )
    assert dormant(await plan_and_save(sessions, settings, date(2026, 12, 3)), m) == []


async def test_a_new_purchase_makes_the_member_due_again_ten_months_later(sessions, settings):
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper)
        await buy(session, m, date(2024, 3, 1))
    assert dormant(await plan_and_save(sessions, settings, date(2026, 12, 2)), m) == [
        "since:2024-03-01"
    ]
    async with sessions() as session, session.begin():
        m = await session.get(Member, m.id)
        await buy(session, m, date(2026, 12, 5))
    assert dormant(await plan_and_save(sessions, settings, date(2027, 10, 5)), m) == []
    assert dormant(await plan_and_save(sessions, settings, date(2027, 10, 9)), m) == [
        "since:2026-12-05"
    ]


async def test_a_greeting_already_in_the_outbox_is_not_planned_twice(sessions, settings):
    """A dormant row written before this rule (the old first-day rule) counts as recorded."""
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper)
        await buy(session, m, date(2026, 1, 15))
        await add_outbox(session, m, "dormant", "since:2026-01-15", date(2026, 11, 16))
    planned = await plan_and_save(sessions, settings, date(2026, 12, 2))
    assert dormant(planned, m) == ["since:2026-01-15"]  # planned, its key already taken
    assert [r.kind for r in await outbox_rows(sessions)] == ["dormant"]
    assert dormant(await plan_and_save(sessions, settings, date(2026, 12, 3)), m) == []


async def test_the_dormant_read_uses_the_partial_index(sessions):
    """Only members not yet greeted for their last purchase are in the index it reads."""
    stmt = dormant_query(datetime(2026, 2, 1, tzinfo=UTC))
    async with sessions() as session, session.begin():
        conn = await session.connection()
        compiled = stmt.compile(dialect=conn.dialect)
        if is_pg():
            await session.exec(text("SET LOCAL enable_seqscan = off"))
            rows = await conn.exec_driver_sql(
                "EXPLAIN " + str(compiled), (datetime(2026, 2, 1, tzinfo=UTC),)
            )
        else:
            rows = await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(compiled), ("2026-02-01 00:00:00.000000",)
            )
        found = " ".join(str(r[-1]) if not is_pg() else r[0] for r in rows)
    assert "ix_members_dormant_due" in found, found
