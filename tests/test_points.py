"""The points ledger: expiry per lot, earliest-expiry-first spending, idempotency, no drift."""

import asyncio
from datetime import UTC, date, datetime

import pytest
from sqlmodel import select

from models.errors import InsufficientPoints, NotFound
from models.points import expire_due, expiry_date, post_points
from models.points_reads import balance_check, expiring_soon
from models.rules import ExpiryRules, PointsRules
from models.tables.ledger import PointsEntry, PointsLot
from tests.factories import make_member

NEVER = PointsRules()
YEARLY = PointsRules(expiry=ExpiryRules(policy="calendar_year"))


def _at(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


async def _post(s, member_id, delta, day, key, rules=NEVER, reason=None):
    return await post_points(
        s,
        rules=rules,
        member_id=member_id,
        delta=delta,
        reason=reason or ("purchase" if delta > 0 else "redemption"),
        key=key,
        at=_at(day),
        local_date=day,
    )


async def _lots(s, member_id):
    stmt = select(PointsLot).where(PointsLot.member_id == member_id).order_by(PointsLot.id)
    return list((await s.exec(stmt.execution_options(populate_existing=True))).all())


@pytest.mark.parametrize(
    "rules, earned, expected",
    [
        (ExpiryRules(policy="never"), date(2026, 9, 1), None),
        (ExpiryRules(policy="calendar_year"), date(2026, 1, 1), date(2026, 12, 31)),
        (ExpiryRules(policy="calendar_year"), date(2026, 12, 31), date(2026, 12, 31)),
        (ExpiryRules(policy="period", period_start="08-01"), date(2026, 9, 1), date(2027, 7, 31)),
        (ExpiryRules(policy="period", period_start="08-01"), date(2026, 7, 31), date(2026, 7, 31)),
        (ExpiryRules(policy="period", period_start="08-01"), date(2026, 8, 1), date(2027, 7, 31)),
        (ExpiryRules(policy="period", period_start="01-01"), date(2026, 6, 1), date(2026, 12, 31)),
        (ExpiryRules(policy="period", period_start="02-29"), date(2027, 2, 28), date(2028, 2, 28)),
        (ExpiryRules(policy="months", months=12), date(2026, 3, 15), date(2027, 3, 14)),
        (ExpiryRules(policy="months", months=24), date(2026, 1, 1), date(2027, 12, 31)),
        (ExpiryRules(policy="months", months=1), date(2026, 1, 31), date(2026, 2, 27)),
    ],
)
def test_expiry_date(rules, earned, expected):
    assert expiry_date(rules, earned) == expected


async def test_each_earning_is_a_lot_with_its_own_expiry(sessions):
    rules = PointsRules(expiry=ExpiryRules(policy="period", period_start="08-01"))
    async with sessions() as s, s.begin():
        m = await make_member(s)
        await _post(s, m.id, 100, date(2026, 7, 31), "p1", rules)
        await _post(s, m.id, 40, date(2026, 9, 1), "p2", rules)
        lots = await _lots(s, m.id)
        assert [(lot.points, lot.remaining, lot.expires_on) for lot in lots] == [
            (100, 100, date(2026, 7, 31)),
            (40, 40, date(2027, 7, 31)),
        ]
        assert m.points == 140  # the loaded member follows the balance
        assert await balance_check(s, member_id=m.id) == (140, 140, 140)


async def test_spending_takes_the_earliest_expiring_lots_first_and_never_expiring_last(sessions):
    async with sessions() as s, s.begin():
        m = await make_member(s)
        await _post(s, m.id, 100, date(2026, 1, 10), "never", NEVER)  # no expiry
        await _post(s, m.id, 50, date(2026, 6, 1), "y2026", YEARLY)  # 2026-12-31
        await _post(
            s,
            m.id,
            70,
            date(2026, 3, 1),
            "m12",
            PointsRules(expiry=ExpiryRules(policy="months", months=6)),
        )  # 2026-08-31
        entry = await _post(s, m.id, -100, date(2026, 7, 1), "spend", YEARLY)
        assert entry.balance_after == 120 and entry.delta == -100
        lots = {lot.expires_on: lot.remaining for lot in await _lots(s, m.id)}
        assert lots == {None: 100, date(2026, 12, 31): 20, date(2026, 8, 31): 0}
        await _post(s, m.id, -30, date(2026, 7, 2), "spend2", YEARLY)
        lots = {lot.expires_on: lot.remaining for lot in await _lots(s, m.id)}
        assert lots == {None: 90, date(2026, 12, 31): 0, date(2026, 8, 31): 0}
        assert await balance_check(s, member_id=m.id) == (90, 90, 90)


async def test_same_key_posts_once(sessions):
    async with sessions() as s, s.begin():
        m = await make_member(s)
        first = await _post(s, m.id, 100, date(2026, 5, 1), "purchase:1")
        again = await _post(s, m.id, 100, date(2026, 5, 1), "purchase:1")
        assert first is not None and first.balance_after == 100
        assert again is None
        assert await balance_check(s, member_id=m.id) == (100, 100, 100)


async def test_balance_never_goes_negative(sessions):
    async with sessions() as s, s.begin():
        m = await make_member(s)
        await _post(s, m.id, 100, date(2026, 5, 1), "earn")
        member_id = m.id
    with pytest.raises(InsufficientPoints) as err:
        async with sessions() as s, s.begin():
            await _post(s, member_id, -101, date(2026, 5, 2), "too-much")
    assert (err.value.balance, err.value.cost) == (100, 101)
    async with sessions() as s, s.begin():
        assert await balance_check(s, member_id=member_id) == (100, 100, 100)
        entry = await _post(s, member_id, -100, date(2026, 5, 2), "all")
        assert entry.balance_after == 0
        assert await balance_check(s, member_id=member_id) == (0, 0, 0)


async def test_unknown_member_and_reason(sessions):
    async with sessions() as s, s.begin():
        with pytest.raises(NotFound):
            await _post(s, 999, -5, date(2026, 5, 1), "x")
        m = await make_member(s)
        with pytest.raises(ValueError):
            await _post(s, m.id, 5, date(2026, 5, 1), "y", reason="gift")


async def test_expire_due_expires_each_lot_once(sessions):
    async with sessions() as s, s.begin():
        m = await make_member(s)
        other = await make_member(s, phone="+8613900139000")
        await _post(s, m.id, 100, date(2026, 5, 1), "a", YEARLY)
        await _post(s, m.id, 25, date(2026, 11, 1), "b", YEARLY)
        await _post(s, m.id, -40, date(2026, 6, 1), "spend", YEARLY)
        await _post(s, m.id, 30, date(2027, 1, 5), "c", YEARLY)
        await _post(s, other.id, 10, date(2026, 2, 1), "d", YEARLY)
        await _post(s, other.id, 5, date(2026, 2, 2), "e", NEVER)
        now = datetime(2027, 1, 1, 0, 5, tzinfo=UTC)

        assert await expire_due(s, rules=YEARLY, today=date(2026, 12, 31), now=now) == 0
        assert await expire_due(s, rules=YEARLY, today=date(2027, 1, 1), now=now) == 95
        assert await balance_check(s, member_id=m.id) == (30, 30, 30)
        assert await balance_check(s, member_id=other.id) == (5, 5, 5)
        assert await expire_due(s, rules=YEARLY, today=date(2027, 1, 2), now=now) == 0
        assert await balance_check(s, member_id=m.id) == (30, 30, 30)

        expiries = (await s.exec(select(PointsEntry).where(PointsEntry.reason == "expiry"))).all()
        assert sorted(e.delta for e in expiries) == [-60, -25, -10]
        assert all(e.key.startswith("expiry:") for e in expiries)
        assert all(e.local_date == date(2027, 1, 1) for e in expiries)


async def test_expired_points_cannot_be_spent_before_the_job_runs(sessions):
    async with sessions() as s, s.begin():
        m = await make_member(s)
        await _post(s, m.id, 100, date(2026, 5, 1), "a", YEARLY)
        await _post(s, m.id, 30, date(2027, 1, 1), "b", YEARLY)
        member_id = m.id
    with pytest.raises(InsufficientPoints) as err:
        async with sessions() as s, s.begin():
            await _post(s, member_id, -50, date(2027, 1, 2), "spend", YEARLY)
    assert err.value.balance == 30
    async with sessions() as s, s.begin():
        entry = await _post(s, member_id, -20, date(2027, 1, 2), "spend", YEARLY)
        assert entry.balance_after == 10
        assert await balance_check(s, member_id=member_id) == (10, 10, 10)
        assert (
            await expire_due(s, rules=YEARLY, today=date(2027, 1, 2), now=_at(date(2027, 1, 2)))
            == 0
        )


async def test_expiring_soon(sessions):
    rules = PointsRules(expiry=ExpiryRules(policy="months", months=1))
    async with sessions() as s, s.begin():
        m = await make_member(s)
        assert await expiring_soon(s, member_id=m.id, today=date(2026, 5, 1)) is None
        await _post(s, m.id, 10, date(2026, 5, 1), "a", rules)  # last day 2026-05-31
        await _post(s, m.id, 15, date(2026, 5, 1), "b", rules)  # same day
        await _post(s, m.id, 7, date(2026, 5, 20), "c", rules)  # 2026-06-19
        await _post(s, m.id, 99, date(2026, 5, 3), "d", NEVER)
        assert await expiring_soon(s, member_id=m.id, today=date(2026, 5, 10)) == (
            25,
            date(2026, 5, 31),
        )
        assert await expiring_soon(s, member_id=m.id, today=date(2026, 5, 31)) == (
            25,
            date(2026, 5, 31),
        )
        # Lots past their day are not "soon" (the job expires them).
        assert await expiring_soon(s, member_id=m.id, today=date(2026, 6, 1)) == (
            7,
            date(2026, 6, 19),
        )
        await _post(s, m.id, -20, date(2026, 5, 21), "spend", rules)
        assert await expiring_soon(s, member_id=m.id, today=date(2026, 5, 21)) == (
            5,
            date(2026, 5, 31),
        )
        assert await expiring_soon(s, member_id=m.id, today=date(2026, 6, 20)) is None


async def test_concurrent_expiry_runs_and_spends_expire_each_lot_once(sessions):
    member_ids = []
    async with sessions() as s, s.begin():
        for i in range(5):
            m = await make_member(s, phone=f"+86138001380{i:02d}")
            await _post(s, m.id, 100, date(2026, 3, 1), f"a{i}", YEARLY)
            await _post(s, m.id, 40, date(2027, 1, 1), f"b{i}", YEARLY)
            member_ids.append(m.id)
    now = datetime(2027, 1, 2, 0, 5, tzinfo=UTC)

    async def run_job():
        async with sessions() as s, s.begin():
            return await expire_due(s, rules=YEARLY, today=date(2027, 1, 2), now=now)

    async def spend(member_id):
        async with sessions() as s, s.begin():
            return await _post(s, member_id, -30, date(2027, 1, 2), f"spend{member_id}", YEARLY)

    results = await asyncio.gather(run_job(), run_job(), run_job(), *map(spend, member_ids))
    # Spending expires the member's due lots itself, so the jobs may find less to do.
    assert sum(results[:3]) <= 500
    async with sessions() as s:
        for member_id in member_ids:
            assert await balance_check(s, member_id=member_id) == (10, 10, 10)
        expiries = (
            await s.exec(select(PointsEntry.delta).where(PointsEntry.reason == "expiry"))
        ).all()
        assert expiries == [-100] * 5
