"""Member ownership (DOMAIN.md §8): probation, purchases, the daily redistribution."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import event, func
from sqlmodel import select

from models.db import transaction
from models.errors import InvalidInput, NotFound
from models.ownership import REDISTRIBUTED, assign, on_purchase, owned_members
from models.probation import NO_ELIGIBLE, redistribute
from models.redistribution import Due, plan_redistribution
from models.rules import LoyaltyRules
from models.tables.members import Assignment, Assistant, Member, Store
from models.tables.purchases import Purchase
from tests.factories import make_assistant, make_member, make_store

RULES = LoyaltyRules()
OPENED_ON = date(2026, 1, 31)
PROBATION_END = date(2026, 3, 31)  # 31 Jan + 2 calendar months
JOB_DAY = date(2026, 4, 1)  # the first day after probation

_phones = itertools.count(13800000000)
_receipts = itertools.count(1)


async def _staff(session, store: Store, *codes: str) -> list[Assistant]:
    return [await make_assistant(session, store=store, code=c, name=c) for c in codes]


async def _member(session, store: Store | None, tier: str = "points") -> Member:
    return await make_member(session, phone=f"+86{next(_phones)}", store=store, tier=tier)


async def _opened(session, store, owner: Assistant, *, on=OPENED_ON, tier="points") -> Member:
    member = await _member(session, store, tier)
    await assign(session, rules=RULES, member=member, assistant_id=owner.id, on=on)
    return member


async def _buy(session, member: Member, day: date, assistant: Assistant | None = None) -> Purchase:
    purchase = Purchase(
        receipt_no=f"R{next(_receipts)}",
        member_id=member.id,
        store_id=member.store_id,
        assistant_id=assistant.id if assistant else None,
        amount=Decimal("199.00"),
        at=datetime(day.year, day.month, day.day, 6, 0, tzinfo=UTC),
        local_date=day,
    )
    session.add(purchase)
    await session.flush()
    await on_purchase(session, rules=RULES, member=member, purchase=purchase)
    return purchase


async def _run(sessions, today: date, seed: int | None = 1):
    async with transaction(sessions) as s:
        return await redistribute(s, rules=RULES, today=today, seed=seed)


async def _assignments(sessions, member_id: int) -> list[Assignment]:
    async with sessions() as s:
        stmt = select(Assignment).where(Assignment.member_id == member_id).order_by(Assignment.id)
        return list((await s.exec(stmt)).all())


async def _owner(sessions, member_id: int) -> int | None:
    async with sessions() as s:
        return (await s.get(Member, member_id)).assistant_id


# --- assign -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on", "until"),
    [
        (date(2026, 1, 31), date(2026, 3, 31)),
        (date(2026, 12, 31), date(2027, 2, 28)),
        (date(2027, 12, 31), date(2028, 2, 29)),
        (date(2026, 5, 15), date(2026, 7, 15)),
    ],
)
async def test_probation_is_two_calendar_months(sessions, on, until):
    async with transaction(sessions) as s:
        store = await make_store(s)
        (a,) = await _staff(s, store, "A")
        member = await _member(s, store)
        row = await assign(s, rules=RULES, member=member, assistant_id=a.id, on=on)
    assert (row.start_on, row.probation_until) == (on, until)
    assert (row.reason, row.established, row.ended_on) == ("opened", False, None)
    assert await _owner(sessions, member.id) == a.id


async def test_manual_assign_closes_the_open_assignment(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, b = await _staff(s, store, "A", "B")
        member = await _opened(s, store, a)
        again = await assign(s, rules=RULES, member=member, assistant_id=a.id, on=date(2026, 2, 2))
        await assign(
            s, rules=RULES, member=member, assistant_id=b.id, on=date(2026, 2, 10), reason="manual"
        )
    rows = await _assignments(sessions, member.id)
    assert again.id == rows[0].id  # re-assigning the current owner is a no-op
    assert [(r.assistant_id, r.reason, r.ended_on, r.end_reason) for r in rows] == [
        (a.id, "opened", date(2026, 2, 10), "reassigned"),
        (b.id, "manual", None, None),
    ]
    assert rows[1].probation_until == date(2026, 4, 10)
    assert await _owner(sessions, member.id) == b.id


async def test_assign_refuses_unknown_inactive_assistant_and_bad_reason(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        (a,) = await _staff(s, store, "A")
        a.active = False
        member = await _member(s, store)
        with pytest.raises(InvalidInput) as err:
            await assign(s, rules=RULES, member=member, assistant_id=a.id, on=OPENED_ON)
        assert err.value.field == "assistant"
        with pytest.raises(NotFound):
            await assign(s, rules=RULES, member=member, assistant_id=a.id + 99, on=OPENED_ON)
        with pytest.raises(InvalidInput):
            await assign(
                s, rules=RULES, member=member, assistant_id=a.id, on=OPENED_ON, reason="whim"
            )
        assert member.assistant_id is None


# --- purchases ----------------------------------------------------------------------------


async def test_purchase_on_the_last_day_of_probation_keeps_the_owner(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, _b = await _staff(s, store, "A", "B")
        member = await _opened(s, store, a)
        await _buy(s, member, PROBATION_END, assistant=_b)  # served by B: A still keeps
    assert (await _assignments(sessions, member.id))[0].established is True
    assert await _run(sessions, JOB_DAY) == []
    assert await _run(sessions, date(2027, 1, 1)) == []
    assert await _owner(sessions, member.id) == a.id


async def test_purchase_after_probation_does_not_rescue_even_before_the_job(sessions):
    """Decision: only purchases dated within [start_on, probation_until] count, so the
    outcome does not depend on when the daily job runs."""
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, b = await _staff(s, store, "A", "B")
        member = await _opened(s, store, a)
        await _buy(s, member, JOB_DAY, assistant=a)
    assert (await _assignments(sessions, member.id))[0].established is False
    result = await _run(sessions, date(2026, 4, 3))
    assert [(r.member_id, r.from_assistant_id, r.to_assistant_id) for r in result] == [
        (member.id, a.id, b.id)
    ]


async def test_purchase_before_the_assignment_started_does_not_establish_it(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, b = await _staff(s, store, "A", "B")
        member = await _opened(s, store, a)
        await assign(
            s, rules=RULES, member=member, assistant_id=b.id, on=date(2026, 3, 1), reason="manual"
        )
        await _buy(s, member, date(2026, 2, 20))  # recorded late, dated in A's time
    rows = await _assignments(sessions, member.id)
    assert [r.established for r in rows] == [False, False]
    assert rows[1].probation_until == date(2026, 5, 1)
    result = await _run(sessions, date(2026, 5, 2))  # nor does the job count it for B
    assert [(r.from_assistant_id, r.to_assistant_id) for r in result] == [(b.id, None)]


async def test_unowned_member_who_buys_is_owned_by_the_serving_assistant(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        (a,) = await _staff(s, store, "A")
        walk_in = await _member(s, store)
        anonymous = await _member(s, store)
        await _buy(s, walk_in, date(2026, 6, 1), assistant=a)
        await _buy(s, anonymous, date(2026, 6, 1))
    rows = await _assignments(sessions, walk_in.id)
    assert [(r.assistant_id, r.reason, r.established, r.start_on) for r in rows] == [
        (a.id, "purchase", True, date(2026, 6, 1))
    ]
    assert await _owner(sessions, walk_in.id) == a.id
    assert await _assignments(sessions, anonymous.id) == []
    assert await _owner(sessions, anonymous.id) is None


async def test_member_recorded_with_an_owner_but_no_history_gets_one_on_purchase(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, b = await _staff(s, store, "A", "B")
        member = await make_member(s, phone="+8613900000001", store=store, assistant=a)
        await _buy(s, member, date(2026, 6, 1), assistant=b)
    rows = await _assignments(sessions, member.id)
    assert [(r.assistant_id, r.established) for r in rows] == [(a.id, True)]
    assert await _owner(sessions, member.id) == a.id


# --- redistribution -----------------------------------------------------------------------


async def test_no_purchase_is_taken_back_the_day_after_probation(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, b = await _staff(s, store, "A", "B")
        member = await _opened(s, store, a)
    assert await _run(sessions, PROBATION_END) == []  # the last day still belongs to A
    result = await _run(sessions, JOB_DAY)
    assert [(r.member_id, r.from_assistant_id, r.to_assistant_id, r.reason) for r in result] == [
        (member.id, a.id, b.id, REDISTRIBUTED)
    ]
    rows = await _assignments(sessions, member.id)
    assert [(r.assistant_id, r.reason, r.ended_on, r.end_reason) for r in rows] == [
        (a.id, "opened", JOB_DAY, "no_purchase"),
        (b.id, "redistributed", None, None),
    ]
    assert (rows[1].start_on, rows[1].probation_until) == (JOB_DAY, date(2026, 6, 1))
    assert await _owner(sessions, member.id) == b.id


async def test_the_assistant_a_member_was_given_to_keeps_them_after_a_purchase(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, b, _c = await _staff(s, store, "A", "B", "C")
        member = await _opened(s, store, a)
        await _buy(s, await _member(s, store), JOB_DAY)  # noise: another member's purchase
    first = await _run(sessions, JOB_DAY)
    new_owner = first[0].to_assistant_id
    async with transaction(sessions) as s:
        m = await s.get(Member, member.id)
        await _buy(s, m, date(2026, 5, 20), assistant=a)  # served by the old owner
    assert await _run(sessions, date(2026, 6, 2)) == []
    assert await _owner(sessions, member.id) == new_owner
    assert (await _assignments(sessions, member.id))[-1].established is True


async def test_a_sale_recorded_before_the_job_on_the_day_of_reassignment_counts(sessions):
    """The sale is dated JOB_DAY (the new owner's first day) but recorded while the old
    assignment was still open, so on_purchase could not establish the new one."""
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, b = await _staff(s, store, "A", "B")
        member = await _opened(s, store, a)
        await _buy(s, member, JOB_DAY, assistant=a)
    assert [r.to_assistant_id for r in await _run(sessions, JOB_DAY)] == [b.id]
    assert await _run(sessions, date(2026, 6, 2)) == []
    rows = await _assignments(sessions, member.id)
    assert [(r.assistant_id, r.ended_on, r.established) for r in rows] == [
        (a.id, JOB_DAY, False),
        (b.id, None, True),
    ]


async def test_never_the_same_assistant_twice(sessions):
    async with transaction(sessions) as s:
        big = await make_store(s, code="S1")
        a, b, c = await _staff(s, big, "A", "B", "C")
        small = await make_store(s, code="S2")
        x, y = await _staff(s, small, "X", "Y")
        wanderer = await _opened(s, big, a)
        short = await _opened(s, small, x)

    round1 = {r.member_id: r for r in await _run(sessions, JOB_DAY)}
    assert round1[wanderer.id].to_assistant_id in {b.id, c.id}
    assert round1[short.id].to_assistant_id == y.id

    round2 = {r.member_id: r for r in await _run(sessions, date(2026, 6, 2))}
    assert {round1[wanderer.id].to_assistant_id, round2[wanderer.id].to_assistant_id} == {
        b.id,
        c.id,
    }
    assert (round2[short.id].to_assistant_id, round2[short.id].reason) == (None, NO_ELIGIBLE)
    assert await _owner(sessions, short.id) is None

    round3 = await _run(sessions, date(2026, 8, 3))
    assert [(r.member_id, r.to_assistant_id, r.reason) for r in round3] == [
        (wanderer.id, None, NO_ELIGIBLE)
    ]
    for member in (wanderer, short):
        rows = await _assignments(sessions, member.id)
        assert all(r.ended_on is not None for r in rows)
        assert len({r.assistant_id for r in rows}) == len(rows)
        assert await _owner(sessions, member.id) is None
    assert await _run(sessions, date(2026, 12, 1)) == []  # unowned members stay put


async def test_two_hundred_members_over_ten_assistants_twenty_each_balanced_by_tier(
    sessions, engine
):
    async with transaction(sessions) as s:
        store = await make_store(s)
        opener, *staff = await _staff(s, store, "OPEN", *[f"A{i}" for i in range(10)])
        for i in range(200):
            await _opened(s, store, opener, tier="gold" if i % 10 == 0 else "points")

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        result = await _run(sessions, JOB_DAY, seed=7)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)

    assert len(result) == 200
    assert Counter(r.to_assistant_id for r in result) == {a.id: 20 for a in staff}
    async with sessions() as s:
        for a in staff:
            owned = await owned_members(s, assistant_id=a.id)
            assert Counter(m.tier for m in owned) == {"gold": 2, "points": 18}
        assert await owned_members(s, assistant_id=opener.id) == []
    # Set-based: a fixed handful of statements, not one per member.
    assert len([st for st in statements if not st.upper().startswith("BEGIN")]) <= 8


async def test_members_redistributed_among_their_previous_owners_come_out_even(sessions):
    """Ten assistants each opened 20 members; each member may go to the nine others.
    Eligibility allows exactly 20 each, and the spreading finds it."""
    async with transaction(sessions) as s:
        store = await make_store(s)
        staff = await _staff(s, store, *[f"A{i}" for i in range(10)])
        opened_by = {}
        for a in staff:
            for _ in range(20):
                opened_by[(await _opened(s, store, a)).id] = a.id
    for seed in (1, 2, 3):
        async with sessions() as s:
            result = await redistribute(s, rules=RULES, today=JOB_DAY, seed=seed)
            await s.rollback()
        assert Counter(r.to_assistant_id for r in result) == {a.id: 20 for a in staff}
        assert all(r.to_assistant_id != opened_by[r.member_id] for r in result)


async def test_tiers_are_spread_first_and_totals_stay_even(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        opener, *staff = await _staff(s, store, "OPEN", "A", "B", "C")
        diamonds = {(await _opened(s, store, opener, tier="diamond")).id for _ in range(2)}
        for _ in range(4):
            await _opened(s, store, opener, tier="points")
    result = await _run(sessions, JOB_DAY)
    per_assistant = Counter(r.to_assistant_id for r in result)
    assert sorted(per_assistant.values()) == [2, 2, 2]
    assert len({r.to_assistant_id for r in result if r.member_id in diamonds}) == 2


async def test_ties_go_to_the_assistant_with_the_lighter_load(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        opener, busy, idle = await _staff(s, store, "OPEN", "BUSY", "IDLE")
        for _ in range(3):
            kept = await _opened(s, store, busy, on=date(2026, 1, 10))
            await _buy(s, kept, date(2026, 1, 20))
        member = await _opened(s, store, opener)
    for seed in range(5):
        async with sessions() as s:
            result = await redistribute(s, rules=RULES, today=JOB_DAY, seed=seed)
            await s.rollback()
        assert [(r.member_id, r.to_assistant_id) for r in result] == [(member.id, idle.id)]


async def test_current_load_of_the_same_tier_counts_before_the_total(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        opener, golden, plain = await _staff(s, store, "OPEN", "GOLDEN", "PLAIN")
        for owner, tier, n in ((golden, "gold", 2), (plain, "points", 3)):
            for _ in range(n):
                kept = await _opened(s, store, owner, on=date(2026, 1, 10), tier=tier)
                await _buy(s, kept, date(2026, 1, 20))
        gold = await _opened(s, store, opener, tier="gold")
        ordinary = await _opened(s, store, opener, on=date(2026, 2, 1))
    result = await _run(sessions, JOB_DAY)
    assert [(r.member_id, r.to_assistant_id) for r in result] == [(gold.id, plain.id)]
    result = await _run(sessions, date(2026, 4, 2))
    assert [(r.member_id, r.to_assistant_id) for r in result] == [(ordinary.id, golden.id)]


def test_spreading_moves_members_to_close_gaps_greedy_placement_leaves():
    """Placed one by one, m1 goes to H (first by rank) and m2, m3 to M and H, leaving
    H 2 and L 0 although m1 could go to L: the evening-out pass moves it."""

    class Ordered(random.Random):
        def __init__(self):
            super().__init__(0)
            self.n = 0

        def random(self):
            self.n += 1
            return self.n / 10  # ranks in id order: H < M < L

        def shuffle(self, x):
            return None

    h, m, lo = 1, 2, 3
    due = [Due(i, i, 9, "points", 1) for i in (1, 2, 3)]
    plan = plan_redistribution(
        due,
        staff={1: [h, m, lo]},
        owned_before={1: {9, m}, 2: {9, lo}, 3: {9, lo}},
        load=Counter(),
        tier_rank={"points": 0},
        rng=Ordered(),
    )
    assert sorted(Counter(plan.values()).values()) == [1, 1, 1]
    assert plan[1] == lo


async def test_same_seed_same_outcome_other_seed_other_outcome(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        opener, *_staff_ = await _staff(s, store, "OPEN", *[f"A{i}" for i in range(5)])
        for _ in range(30):
            await _opened(s, store, opener)

    async def dry_run(seed: int):
        async with sessions() as s:
            result = await redistribute(s, rules=RULES, today=JOB_DAY, seed=seed)
            await s.rollback()
        return [(r.member_id, r.to_assistant_id) for r in result]

    first = await dry_run(42)
    assert first == await dry_run(42)
    assert first != await dry_run(43)
    assert Counter(to for _, to in first) == Counter(to for _, to in await dry_run(43))


async def test_a_second_run_the_same_day_does_nothing(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        opener, a, b = await _staff(s, store, "OPEN", "A", "B")
        for _ in range(6):
            await _opened(s, store, opener)
    first = await _run(sessions, JOB_DAY, seed=None)
    async with sessions() as s:
        owners = {m.id: m.assistant_id for m in (await s.exec(select(Member))).all()}
        rows = (await s.exec(select(func.count()).select_from(Assignment))).one()
    assert len(first) == 6 and rows == 12
    assert await _run(sessions, JOB_DAY, seed=None) == []
    assert await _run(sessions, date(2026, 6, 1), seed=None) == []  # fresh probation
    async with sessions() as s:
        assert {m.id: m.assistant_id for m in (await s.exec(select(Member))).all()} == owners
        assert (await s.exec(select(func.count()).select_from(Assignment))).one() == 12


async def test_assistants_of_other_stores_never_receive_members(sessions):
    async with transaction(sessions) as s:
        home = await make_store(s, code="S1")
        owner, colleague = await _staff(s, home, "A", "B")
        other = await make_store(s, code="S2")
        strangers = await _staff(s, other, "X", "Y", "Z")
        members = [await _opened(s, home, owner) for _ in range(5)]
        drifter = await _opened(s, None, owner)  # no store on file: the owner's store
    result = await _run(sessions, JOB_DAY)
    assert {r.member_id for r in result} == {m.id for m in members} | {drifter.id}
    assert {r.to_assistant_id for r in result} == {colleague.id}
    async with sessions() as s:
        for stranger in strangers:
            assert await owned_members(s, assistant_id=stranger.id) == []


async def test_inactive_assistants_never_receive_members(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        owner, gone, active = await _staff(s, store, "A", "GONE", "C")
        members = [await _opened(s, store, owner) for _ in range(4)]
        gone.active = False
        s.add(gone)
    result = await _run(sessions, JOB_DAY)
    assert [r.to_assistant_id for r in result] == [active.id] * len(members)
    # When the only other assistant is inactive, the member is left unowned.
    async with transaction(sessions) as s:
        (await s.get(Assistant, active.id)).active = False
    second = await _run(sessions, date(2026, 6, 2))
    assert {(r.to_assistant_id, r.reason) for r in second} == {(None, NO_ELIGIBLE)}


async def test_objects_loaded_in_the_session_reflect_the_job(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        a, b = await _staff(s, store, "A", "B")
        member = await _opened(s, store, a)
    async with transaction(sessions) as s:
        loaded = await s.get(Member, member.id)
        opening = (await s.exec(select(Assignment))).one()
        await redistribute(s, rules=RULES, today=JOB_DAY, seed=1)
        assert loaded.assistant_id == b.id
        assert (opening.ended_on, opening.end_reason) == (JOB_DAY, "no_purchase")
        assert [m.id for m in await owned_members(s, assistant_id=b.id)] == [member.id]
