"""The care calendar: purchase follow-ups due on a day, and the quarterly fallback.

Day N of a purchase counts the sale's brand day as day 1 (`sale_day`); the
follow-ups and the fallback rules are described in `scheduler.plan.planner`. The
date arithmetic is pure (`sale_day`, `quarter_occasion`,
`quarterly_sale_days`); the sources read the purchases and members whose day
it is through the indexes on `purchases.local_date` and
`members.last_purchase_at`; `apply_fallback` swaps a batch's per-purchase care
for the quarter's when the member is in fallback.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from sqlalchemy import func
from sqlmodel import col, select

from models.clock import add_months, day_end, day_start, local_date
from models.kinds import CARE_KINDS
from models.outbox.states import SUPPRESSED
from models.tables.members import Member
from models.tables.outbox import OutboxMessage
from models.tables.purchases import Purchase
from scheduler.plan.plan_reads import CHUNK, among, chunks, rows
from scheduler.plan.plan_types import Due, MemberRow, PlanDay, Sale

QUARTER_DAYS = 91


def sale_day(day: date, n: int) -> date:
    """The sale day whose day `n` is `day` (the sale's own day is day 1)."""
    return day - timedelta(days=n - 1)


def quarter_occasion(day: date) -> str:
    return f"quarter:{day.year}Q{(day.month - 1) // 3 + 1}"


def quarterly_sale_days(day: date, *, base: int, dormant_months: int) -> list[date]:
    """Last-purchase days for which `day` is a continuing quarterly care day
    (day base + 91·k, k >= 1, before `dormant_months` - 1 months after the purchase)."""
    out = []
    n = base + QUARTER_DAYS
    while n - 1 <= 31 * dormant_months:
        sold = sale_day(day, n)
        if day < add_months(sold, dormant_months - 1):
            out.append(sold)
        n += QUARTER_DAYS
    return out


# --------------------------------------------------------------------------- sources


async def purchase_followups(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    """The points notice and care messages of the purchases whose day N is the plan's day."""
    care = plan.msg.care_days
    by_day: dict[date, list[tuple[str, bool | None]]] = defaultdict(list)
    for kind, n, vip in (
        ("points_notice", care.points_notice, None),
        ("care_d3", care.care_d3, None),
        ("care_d7", care.care_d7, True),
        ("care_d10", care.care_d10, False),
        ("care_d30", care.care_d30, None),
        ("care_d120", care.care_d120, None),
    ):
        if n:
            by_day[sale_day(plan.day, n)].append((kind, vip))
    if not by_day:
        return
    stmt = select(
        Purchase.id, Purchase.member_id, Purchase.store_id, Purchase.assistant_id,
        Purchase.local_date,
    ).where(col(Purchase.local_date).in_(list(by_day)))  # fmt: skip
    for row in await rows(plan, stmt):
        sale = Sale(*row)
        for kind, vip in by_day[sale.local_date]:
            due[sale.member_id].append(
                Due(
                    kind,
                    f"purchase:{sale.id}",
                    data=sale,
                    store_id=sale.store_id,
                    assistant_id=sale.assistant_id,
                    vip=vip,
                    care=kind in CARE_KINDS,
                )
            )


async def members_last_bought_on(plan: PlanDay, days: Iterable[date]) -> list[tuple[int, date]]:
    """(member id, last purchase day) for members whose last purchase fell on `days`."""
    days = sorted(set(days))
    if not days:
        return []
    lo, hi = day_start(days[0], plan.tz), day_end(days[-1], plan.tz)
    stmt = select(Member.id, Member.last_purchase_at).where(
        col(Member.last_purchase_at) >= lo, col(Member.last_purchase_at) < hi
    )
    wanted = set(days)
    out = []
    for member_id, at in await rows(plan, stmt):
        d = local_date(at, plan.tz)
        if d in wanted:
            out.append((member_id, d))
    return out


async def quarterly_days(plan: PlanDay, due: dict[int, list[Due]]) -> None:
    """The continuing quarterly care of members whose last purchase was 120 + 91·k days ago
    (kept only for members in fallback, `apply_fallback`)."""
    days = quarterly_sale_days(
        plan.day,
        base=plan.msg.care_days.care_d120 or 120,
        dormant_months=plan.msg.dormant_months,
    )
    occasion = quarter_occasion(plan.day)
    for member_id, _last in await members_last_bought_on(plan, days):
        due[member_id].append(Due("care_d120", occasion, quarterly=True))


# --------------------------------------------------------------------------- fallback


async def apply_fallback(
    plan: PlanDay, members: list[MemberRow], due: dict[int, list[Due]]
) -> None:
    """Quarterly fallback (`scheduler.plan.planner`): swap per-purchase care for the quarter's."""
    concerned = [m.id for m in members if any(c.care or c.quarterly for c in due.get(m.id, ()))]
    if not concerned:
        return
    fallback = await in_fallback(plan, concerned)
    occasion = quarter_occasion(plan.day)
    for member_id in concerned:
        cands = due[member_id]
        if member_id in fallback:
            kept = [c for c in cands if not (c.care or c.quarterly)]
            kept.append(Due("care_d120", occasion, quarterly=True))
        else:
            kept = [c for c in cands if not c.quarterly]
        due[member_id] = kept


async def in_fallback(plan: PlanDay, member_ids: Sequence[int]) -> set[int]:
    """The members with at least ``quarterly_after`` care messages (not suppressed, planned
    before the day) planned after the day of their last purchase before the day."""
    last: dict[int, date] = {}
    counts: dict[int, int] = defaultdict(int)
    for chunk in chunks(member_ids, CHUNK):
        stmt = (
            select(Purchase.member_id, func.max(Purchase.local_date))
            .where(among(plan.pg, Purchase.member_id, chunk), Purchase.local_date < plan.day)
            .group_by(Purchase.member_id)
        )
        for member_id, d in await rows(plan, stmt):
            last[member_id] = d
        stmt = select(OutboxMessage.member_id, OutboxMessage.planned_on).where(
            among(plan.pg, OutboxMessage.member_id, chunk),
            col(OutboxMessage.kind).in_(CARE_KINDS),
            OutboxMessage.status != SUPPRESSED,
            OutboxMessage.planned_on < plan.day,
        )
        for member_id, planned_on in await rows(plan, stmt):
            bought = last.get(member_id)
            if bought is None or planned_on > bought:
                counts[member_id] += 1
    return {m for m, n in counts.items() if n >= plan.msg.quarterly_after}
