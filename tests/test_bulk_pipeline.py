"""On PostgreSQL two bulk batches are in flight (`models.bulk.pipeline`): a member
changed by another writer between two batches, and a batch whose write failed, make the
next batch replay from the database, and nothing is lost; the import keeps the planner's
statistics in step (`models.bulk.stats`). The sheets and helpers are
`tests.test_bulk_import`'s."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from bot.csvio.batches import Batcher
from bot.csvio.members import import_members
from bot.csvio.purchases import import_purchases
from models.bulk import receipts as bulk_receipts
from models.bulk import write as bulk_write
from models.db import is_postgres, transaction
from models.purchases.visits import adjust_points
from tests.table_snapshot import snapshot, wipe
from tests.test_bulk_import import MEMBER_SHEET, TZ, _seed, _sheet, _watch_batchers


async def _pipelined(settings, sessions, tmp_path, monkeypatch) -> list[Batcher]:
    """Members imported; the purchase import's batchers watched; PostgreSQL only (the
    pipeline's engine)."""
    if not is_postgres(sessions.kw["bind"]):
        pytest.skip("two batches in flight on PostgreSQL only (SQLite: one writer)")
    await _seed(sessions)
    members = tmp_path / "members.csv"
    members.write_text("\n".join(MEMBER_SHEET) + "\n", encoding="utf-8")
    await import_members(
        sessions, rules=settings.loyalty, tz=TZ, path=members, today=date(2026, 1, 5)
    )
    return _watch_batchers(monkeypatch)


async def _balances(engine) -> list[tuple]:
    """Per member: (points, sum of the ledger, sum of open lots, whether each entry's
    balance_after follows from the one before)."""
    async with engine.connect() as conn:
        members = (await conn.exec_driver_sql("SELECT id, points FROM members")).all()
        out = []
        for member_id, points in members:
            entries = (await conn.exec_driver_sql(
                "SELECT delta, balance_after FROM points_ledger WHERE member_id = $1 ORDER BY id",
                (member_id,),
            )).all()  # fmt: skip
            lots = (await conn.exec_driver_sql(
                "SELECT coalesce(sum(remaining), 0) FROM points_lots WHERE member_id = $1",
                (member_id,),
            )).scalar()  # fmt: skip
            running, chained = 0, True
            for delta, after in entries:
                running += delta
                chained = chained and after == running
            out.append((points, running, lots, chained))
        return out


async def test_a_member_changed_between_two_batches_is_replayed_from_the_database(
    settings, engine, sessions, tmp_path, monkeypatch
):
    """Another writer adjusts the points of a member the next batch replays on from the
    batch before (between that batch's commit and the next one's write): the next batch
    sees the row changed, replays again from the database, and nothing is lost."""
    batchers = await _pipelined(settings, sessions, tmp_path, monkeypatch)
    real = bulk_receipts.verify_carried
    changed: list[int] = []

    async def meanwhile(session, carried, expected, **kwargs):
        if not changed:
            changed.append(carried[0].id)
            async with transaction(sessions) as other:
                await adjust_points(
                    other, rules=settings.loyalty, tz=TZ, member_id=carried[0].id, delta=7,
                    key="meanwhile", at=datetime(2026, 6, 1, tzinfo=TZ), reason="test",
                    actor="test",
                )  # fmt: skip
        return await real(session, carried, expected, **kwargs)

    monkeypatch.setattr(bulk_receipts, "verify_carried", meanwhile)
    path = tmp_path / "p.csv"
    path.write_text("\n".join(_sheet(4, date(2026, 1, 2), 60, "D")) + "\n", encoding="utf-8")
    summary = await import_purchases(
        sessions, rules=settings.loyalty, tz=TZ, path=path, batch_size=5
    )
    # that batch, and the next one if it had already replayed on from it
    assert changed and 1 <= batchers[0].replayed_again <= 2
    assert summary.counts["recorded"] == summary.records - 4 - summary.counts["returned"]
    async with engine.connect() as conn:
        stored = (await conn.exec_driver_sql("SELECT count(*) FROM purchases")).scalar()
        adjusted = (await conn.exec_driver_sql(
            "SELECT count(*) FROM points_ledger WHERE key = 'adjust:meanwhile' AND member_id = $1",
            (changed[0],),
        )).scalar()  # fmt: skip
    assert stored == summary.counts["recorded"] and adjusted == 1
    for points, ledger, lots, chained in await _balances(engine):
        assert points == ledger == lots and chained


async def test_a_batch_that_failed_makes_the_next_one_replay_from_the_database(
    settings, engine, sessions, tmp_path, monkeypatch
):
    """The first write of a batch fails (its transaction rolls back and the batch is
    redone alone): the next batch, replayed from what the failed one left in memory,
    replays again from the database; the tables end as an import with no failure."""
    path = tmp_path / "p.csv"
    path.write_text("\n".join(_sheet(5, date(2026, 1, 2), 60, "E")) + "\n", encoding="utf-8")
    await _pipelined(settings, sessions, tmp_path, monkeypatch)
    await import_purchases(sessions, rules=settings.loyalty, tz=TZ, path=path, batch_size=5)
    expected = await snapshot(engine)
    await wipe(engine)
    batchers = await _pipelined(settings, sessions, tmp_path, monkeypatch)
    real, calls = bulk_write.Writer.run, []

    async def failing(self, steps):
        calls.append(len(steps))
        if len(calls) == 3:
            raise RuntimeError("the database refused this once")
        return await real(self, steps)

    monkeypatch.setattr(bulk_write.Writer, "run", failing)
    await import_purchases(sessions, rules=settings.loyalty, tz=TZ, path=path, batch_size=5)
    assert len(calls) > 3 and batchers[0].replayed_again >= 1
    got = await snapshot(engine)
    for table, rows in expected.items():
        assert rows == got[table], table


async def test_an_import_keeps_the_planner_statistics_in_step_on_postgresql(
    settings, engine, sessions, tmp_path
):
    """A fresh database has no table statistics (and a server may run without
    autovacuum): the import runs ANALYZE on the tables it fills as they grow, so the
    look-ups of later batches are planned for the table they read."""
    if not is_postgres(engine):
        pytest.skip("PostgreSQL's planner statistics")
    await _seed(sessions)
    path = tmp_path / "members.csv"
    rows = [f"1370000{n:04d},会员{n},S1" for n in range(2500)]
    path.write_text("phone,name,store\n" + "\n".join(rows) + "\n", encoding="utf-8")

    async def analyzed() -> int:
        async with engine.connect() as conn:
            return (await conn.exec_driver_sql(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'members'"
            )).scalar()  # fmt: skip

    before = await analyzed()
    summary = await import_members(
        sessions, rules=settings.loyalty, tz=TZ, path=path, today=date(2026, 1, 5)
    )
    assert summary.counts["created"] == 2500
    after = await analyzed()
    assert after > before
    async with engine.connect() as conn:
        estimate = (await conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE relname = 'members'"
        )).scalar()  # fmt: skip
    assert estimate >= 1000  # the planner knows the table is no longer empty
