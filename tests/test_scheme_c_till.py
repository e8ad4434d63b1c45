"""004 (examples/scheme-c.toml) at the till: the August rebate turns the balance into a
cash-value voucher at 1 % and clears the points (before the period's expiry, once);
the ME card lapses when its period brought under 1,000 points. Explicit dates."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlmodel import select

from models.db import transaction
from models.points import post_points
from models.points_reads import balance_check
from models.rebate import run_rebate
from models.settings.load import load_settings
from models.tables.ledger import PointsEntry, TierChange, Voucher
from models.tables.members import Member, Store
from models.tables.purchases import Purchase
from models.tiers.review import review_tiers
from scheduler.jobs import upkeep_steps

C = load_settings(Path(__file__).resolve().parents[1] / "examples" / "scheme-c.toml", environ={})
NOW = datetime(2027, 7, 31, 20, tzinfo=UTC)  # 08-01 04:00 in Shanghai


async def _member(s, phone: str, points: int, earned: date) -> Member:
    m = Member(phone=phone, join_date=date(2026, 1, 1), tier="member")
    s.add(m)
    await s.flush()
    at = datetime(earned.year, earned.month, earned.day, 4, tzinfo=UTC)
    await post_points(s, rules=C.points, member_id=m.id, delta=points, reason="adjustment",
                      key=f"seed:{phone}", at=at, local_date=earned)  # fmt: skip
    return m


async def test_the_august_rebate_turns_the_balance_into_a_voucher_once(sessions):
    async with transaction(sessions) as s:
        m = await _member(s, "+8613800138000", 12345, date(2027, 3, 1))  # expires 2027-07-31
        empty = await _member(s, "+8613800138001", 0, date(2027, 3, 1))
    async with transaction(sessions) as s:
        assert await run_rebate(s, rules=C.points, today=date(2027, 7, 31), now=NOW) == 0
    steps = upkeep_steps(settings=C, day=date(2027, 8, 1), now=NOW)
    assert list(steps)[:2] == ["rebate", "expire_points"]  # rebated before expiring
    for _ in range(2):  # a rerun changes nothing
        async with transaction(sessions) as s:
            for step in steps.values():
                await step(s)
    async with transaction(sessions) as s:
        voucher = (await s.exec(select(Voucher).where(Voucher.member_id == m.id))).one()
        assert (voucher.value, voucher.reward_code, voucher.expires_on) == (
            Decimal("123.45"),
            "rebate",
            date(2027, 10, 30),
        )
        entry = (await s.exec(select(PointsEntry).where(PointsEntry.reason == "rebate"))).one()
        assert entry.delta == -12345 and voucher.entry_id == entry.id
        assert await balance_check(s, member_id=m.id) == (0, 0, 0)
        expired = (await s.exec(select(PointsEntry).where(PointsEntry.reason == "expiry"))).all()
        assert expired == []  # nothing was left to expire
        assert (await s.exec(select(Voucher).where(Voucher.member_id == empty.id))).all() == []


async def test_the_me_card_lapses_under_1000_points_in_its_period(sessions):
    async with transaction(sessions) as s:
        kept = Member(phone="+8613800138000", join_date=date(2026, 1, 1), tier="me",
                      tier_since=date(2026, 8, 10), tier_expires=date(2027, 8, 10))  # fmt: skip
        lapsed = Member(phone="+8613800138001", join_date=date(2026, 1, 1), tier="me",
                        tier_since=date(2026, 8, 10), tier_expires=date(2027, 8, 10))  # fmt: skip
        store = Store(code="S1", name="店")
        s.add_all([kept, lapsed, store])
        await s.flush()
        for m, points in ((kept, 1000), (lapsed, 999)):
            s.add(Purchase(receipt_no=f"R{m.id}", member_id=m.id, store_id=store.id, amount=points,
                           at=datetime(2027, 2, 1, 4, tzinfo=UTC), local_date=date(2027, 2, 1),
                           points=points))  # fmt: skip
    async with transaction(sessions) as s:
        changes = await review_tiers(s, rules=C.loyalty, today=date(2027, 8, 10))
    assert sorted((c.member_id, c.reason, c.to_tier) for c in changes) == [
        (kept.id, "renewed", "me"),
        (lapsed.id, "lapsed", "member"),
    ]
    async with transaction(sessions) as s:
        assert (await s.get(Member, lapsed.id)).tier == "member"
        assert len((await s.exec(select(TierChange))).all()) == 2
