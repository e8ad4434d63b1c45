"""The manager's numbers (models/staff_stats.py, DOMAIN.md §9) on crafted data."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from models import cards, ownership, probation, staff_stats
from models.db import transaction
from models.tables.members import Member
from models.tables.purchases import Purchase
from tests.factories import make_assistant, make_member, make_store

START, END = date(2026, 3, 1), date(2026, 3, 10)  # ten days


@pytest.fixture
def rules(settings):
    return settings.loyalty


async def _buy(s, member: Member, receipt: str, day: date, store_id: int) -> None:
    s.add(
        Purchase(
            receipt_no=receipt,
            member_id=member.id,
            store_id=store_id,
            amount=Decimal("100"),
            at=datetime.combine(day, time(6, 0), tzinfo=UTC),
            local_date=day,
        )
    )
    await s.flush()


async def test_capture_rate_credits_the_assistant_who_opened_the_card(sessions, rules):
    async with transaction(sessions) as s:
        store = await make_store(s, code="S1")
        other = await make_store(s, code="S2")
        a1 = await make_assistant(s, store=store, code="A1")
        a2 = await make_assistant(s, store=store, code="A2")
        b1 = await make_assistant(s, store=other, code="B1")
        idle = await make_assistant(s, store=store, code="A3")  # opened nobody: a row of zeros
        n = 0

        async def opened(by, *, name="张三", birthday="05-20", joined=date(2026, 3, 2), st=store):
            nonlocal n
            n += 1
            m = await make_member(
                s, phone=f"+86138001380{n:02d}", name=name, birthday=birthday,
                join_date=joined, store=st,
            )  # fmt: skip
            await ownership.assign(s, rules=rules, member=m, assistant_id=by.id, on=joined)
            return m

        await opened(a1)
        await opened(a1, joined=END)
        await opened(a1, birthday=None)  # no birthday: incomplete
        await opened(a1, name=" ")  # blank name: incomplete
        moved = await opened(a1)  # later given to A2: still A1's opening
        await ownership.assign(
            s, rules=rules, member=moved, assistant_id=a2.id, on=date(2026, 3, 5), reason="manual"
        )
        await opened(a2, joined=START)
        await opened(a2, joined=date(2026, 2, 28))  # before the period
        await opened(a2, joined=date(2026, 3, 11))  # after it
        await opened(b1, st=other)  # another store
        # Recorded without history: counts for members.assistant_id.
        n += 1
        await make_member(
            s, phone=f"+86138001380{n:02d}", name="李四", birthday=None,
            join_date=date(2026, 3, 3), store=store, assistant=a2,
        )  # fmt: skip

        rows = await staff_stats.capture_rates(s, store_id=store.id, start=START, end=END)

    by_code = {r.code: r for r in rows}
    assert set(by_code) == {"A1", "A2", "A3"}
    assert (by_code["A1"].opened, by_code["A1"].complete) == (5, 3)
    assert by_code["A1"].rate == pytest.approx(0.6)
    assert by_code["A1"].complete_per_day == pytest.approx(0.3)
    assert (by_code["A2"].opened, by_code["A2"].complete) == (2, 1)
    assert by_code["A2"].rate == pytest.approx(0.5)
    assert (by_code["A3"].opened, by_code["A3"].complete, by_code["A3"].rate) == (0, 0, None)
    assert by_code["A3"].days == 10 and idle.id == by_code["A3"].assistant_id


async def test_opt_in_rate_is_members_not_stopped_over_all(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s, code="S1")
        other = await make_store(s, code="S2")
        for i in range(4):
            m = await make_member(s, phone=f"+861380013800{i}", store=store)
            m.stopped = i == 0
            s.add(m)
        stopped_elsewhere = await make_member(s, phone="+8613900139000", store=other)
        stopped_elsewhere.stopped = True
        s.add(stopped_elsewhere)
        await s.flush()
        ratio = await staff_stats.opt_in_rate(s, store_id=store.id)
        empty = await staff_stats.opt_in_rate(s, store_id=other.id + 100)
    assert (ratio.numerator, ratio.denominator) == (3, 4)
    assert ratio.rate == pytest.approx(0.75)
    assert empty.rate is None


async def test_churn_is_one_minus_members_with_a_repeat_purchase_in_the_period(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s, code="S1")
        ms = [
            await make_member(s, phone=f"+861380013800{i}", store=store, join_date=date(2026, 1, 1))
            for i in range(5)
        ]
        late = await make_member(s, phone="+8613800138009", store=store, join_date=date(2026, 4, 1))
        sid = store.id
        # 0: first and second purchase both in the period → repeat in the period.
        await _buy(s, ms[0], "R01", date(2026, 3, 2), sid)
        await _buy(s, ms[0], "R02", date(2026, 3, 8), sid)
        # 1: bought before, came back in the period → repeat.
        await _buy(s, ms[1], "R11", date(2026, 1, 15), sid)
        await _buy(s, ms[1], "R12", date(2026, 3, 5), sid)
        # 2: first purchase ever in the period → not a repeat.
        await _buy(s, ms[2], "R21", date(2026, 3, 5), sid)
        # 3: two purchases, both before the period → not in the period.
        await _buy(s, ms[3], "R31", date(2026, 1, 5), sid)
        await _buy(s, ms[3], "R32", date(2026, 2, 5), sid)
        # 4: never bought. `late` joined after the period: not counted at all.
        await _buy(s, late, "R91", date(2026, 4, 2), sid)
        churn = await staff_stats.churn_rate(s, store_id=sid, start=START, end=END)
    assert (churn.numerator, churn.denominator) == (2, 5)
    assert churn.rate == pytest.approx(0.6)


async def test_pickup_progress_counts_applications_by_status_in_tracker_order(sessions, rules):
    now = datetime(2026, 3, 1, tzinfo=UTC)
    async with transaction(sessions) as s:
        store = await make_store(s, code="S1")
        apps = []
        for i in range(4):
            m = await make_member(s, phone=f"+861380013800{i}", store=store)
            apps.append(await cards.open_application(s, member=m, tier="gold", actor="t", now=now))
        for app, steps in zip(apps, ([], ["entered"], ["entered"], ["cancelled"]), strict=True):
            for step in steps:
                await cards.advance(
                    s, rules=rules, application_id=app.id, to_status=step, actor="t", now=now
                )
        progress = await staff_stats.pickup_progress(s, store_id=store.id)
    assert progress == [("applied", 1), ("entered", 2), ("cancelled", 1)]


async def test_latest_redistribution_shows_who_went_where(sessions, rules):
    async with transaction(sessions) as s:
        store = await make_store(s, code="S1")
        a1 = await make_assistant(s, store=store, code="A1")
        a2 = await make_assistant(s, store=store, code="A2")
        assert (await staff_stats.latest_redistribution(s, store_id=store.id)).day is None
        m = await make_member(s, phone="+8613800138000", store=store)
        await ownership.assign(s, rules=rules, member=m, assistant_id=a1.id, on=date(2026, 1, 1))
        done = await probation.redistribute(s, rules=rules, today=date(2026, 3, 5), seed=1)
        assert len(done) == 1
        latest = await staff_stats.latest_redistribution(s, store_id=store.id)
    assert latest.day == date(2026, 3, 5)
    assert [(x.member_id, x.from_assistant_id, x.to_assistant_id) for x in latest.moved] == [
        (m.id, a1.id, a2.id)
    ]
