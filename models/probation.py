"""The daily probation review (DOMAIN.md §8, the rules in `models.ownership`): members whose
probation ended without a purchase are taken back and handed out again, within their
store, by `models.redistribution.plan_redistribution`. No function here commits."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, insert, update
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import add_months
from models.ownership import NO_PURCHASE, REDISTRIBUTED
from models.redistribution import Due, plan_redistribution
from models.rules import LoyaltyRules
from models.tables.members import Assignment, Assistant, Member
from models.tables.purchases import Purchase

NO_ELIGIBLE = "no_eligible_assistant"  # Reassignment.reason: the member is now unowned


@dataclass(frozen=True)
class Reassignment:
    """One member taken back by `redistribute`. `reason` is "redistributed" (given to
    `to_assistant_id`) or "no_eligible_assistant" (now unowned, `to_assistant_id` None)."""

    member_id: int
    from_assistant_id: int
    to_assistant_id: int | None
    reason: str


def _bought_in_probation():
    """EXISTS a purchase of the assignment's member dated within its probation."""
    return (
        select(Purchase.id)
        .where(
            Purchase.member_id == Assignment.member_id,
            Purchase.local_date >= Assignment.start_on,
            Purchase.local_date <= Assignment.probation_until,
        )
        .exists()
    )


def _ended_probation(today: date) -> tuple:
    """An open assignment still on probation whose last day is before `today`."""
    return (
        Assignment.ended_on == None,  # noqa: E711
        Assignment.established == False,  # noqa: E712
        Assignment.probation_until < today,
    )


def _due_conditions(today: date) -> tuple:
    """Probation over and no purchase in its window: the member is taken back."""
    return (*_ended_probation(today), ~_bought_in_probation())


async def redistribute(
    session: AsyncSession, *, rules: LoyaltyRules, today: date, seed: int | None = None
) -> list[Reassignment]:
    """The daily job: take back members whose probation ended without a purchase and
    hand them out again (DOMAIN.md §8). Returns what happened, by member id.

    Eight statements whatever the number of members. First an UPDATE establishing
    ended probations that do have a purchase in their window but were not marked
    by `on_purchase` (a sale recorded on the morning of the day a member was
    redistributed, before the job ran, or rows imported without it). Then four
    reads (the due assignments, the candidate assistants, the members' ownership history, the
    candidates' current load), then one UPDATE closing the due assignments (its
    WHERE re-checks they are still due; RETURNING says which it closed), one
    multi-row INSERT of the new assignments and one UPDATE setting every taken-back
    member's `assistant_id` from their open assignment (NULL when none).
    Idempotent: the new assignments start `today`, so a second run finds nothing due.
    """
    await session.exec(
        update(Assignment.__table__)
        .where(*_ended_probation(today), _bought_in_probation())
        .values(established=True)
    )
    tiers = rules.tiers
    old_owner = aliased(Assistant)
    due_rows = await session.exec(
        select(
            Assignment.id,
            Assignment.member_id,
            Assignment.assistant_id,
            Member.tier,
            func.coalesce(Member.store_id, old_owner.store_id),
        )
        .join(Member, Member.id == Assignment.member_id)
        .join(old_owner, old_owner.id == Assignment.assistant_id)
        .where(*_due_conditions(today))
        .order_by(Assignment.id)
    )
    due = [Due(aid, mid, frm, tiers.level(tier).code, sid) for aid, mid, frm, tier, sid in due_rows]
    if not due:
        return []

    store_ids = sorted({d.store_id for d in due})
    on_duty = (Assistant.active == True, Assistant.store_id.in_(store_ids))  # noqa: E712
    staff: dict[int, list[int]] = defaultdict(list)
    for aid, sid in await session.exec(
        select(Assistant.id, Assistant.store_id).where(*on_duty).order_by(Assistant.id)
    ):
        staff[sid].append(aid)

    due_members = select(Assignment.member_id).where(*_due_conditions(today))
    history = aliased(Assignment)
    owned_before: dict[int, set[int]] = defaultdict(set)
    for mid, aid in await session.exec(
        select(history.member_id, history.assistant_id)
        .where(history.member_id.in_(due_members))
        .distinct()
    ):
        owned_before[mid].add(aid)

    load: Counter[tuple[int, str]] = Counter()
    candidate_ids = select(Assistant.id).where(*on_duty)
    for aid, tier, n in await session.exec(
        select(Member.assistant_id, Member.tier, func.count())
        .where(Member.assistant_id.in_(candidate_ids))
        .group_by(Member.assistant_id, Member.tier)
    ):
        load[(aid, tiers.level(tier).code)] += n
    for d in due:  # they are leaving their owner
        if load[(d.from_assistant_id, d.tier)] > 0:
            load[(d.from_assistant_id, d.tier)] -= 1

    plan = plan_redistribution(
        due,
        staff=staff,
        owned_before=owned_before,
        load=load,
        tier_rank={lv.code: i for i, lv in enumerate(tiers.levels)},
        rng=random.Random(seed),
    )

    closed = await session.exec(
        update(Assignment.__table__)
        .where(*_due_conditions(today))
        .values(ended_on=today, end_reason=NO_PURCHASE)
        .returning(Assignment.__table__.c.id)
    )
    closed_ids = set(closed.scalars().all())
    due = [d for d in due if d.assignment_id in closed_ids]
    if not due:
        return []
    probation_until = add_months(today, rules.ownership.probation_months)
    new_rows = [
        {
            "member_id": d.member_id,
            "assistant_id": plan[d.member_id],
            "start_on": today,
            "probation_until": probation_until,
            "established": False,
            "reason": REDISTRIBUTED,
        }
        for d in due
        if plan[d.member_id] is not None
    ]
    if new_rows:
        await session.exec(insert(Assignment.__table__), params=new_rows)
    members, current = Member.__table__, Assignment.__table__.alias("current")
    owner_now = (
        select(current.c.assistant_id)
        .where(current.c.member_id == members.c.id, current.c.ended_on == None)  # noqa: E711
        .order_by(current.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    taken_back = select(Assignment.member_id).where(
        Assignment.ended_on == today, Assignment.end_reason == NO_PURCHASE
    )
    await session.exec(
        update(members).where(members.c.id.in_(taken_back)).values(assistant_id=owner_now)
    )

    _sync_identity_map(session, due, plan, today)
    return sorted(
        (
            Reassignment(
                member_id=d.member_id,
                from_assistant_id=d.from_assistant_id,
                to_assistant_id=plan[d.member_id],
                reason=REDISTRIBUTED if plan[d.member_id] is not None else NO_ELIGIBLE,
            )
            for d in due
        ),
        key=lambda r: r.member_id,
    )


def _sync_identity_map(
    session: AsyncSession, due: Iterable[Due], plan: dict[int, int | None], today: date
) -> None:
    """The bulk statements bypass the ORM: bring objects already loaded in this
    session in line with the database, without marking them dirty."""
    identity_map = session.identity_map
    for d in due:
        member = identity_map.get(session.identity_key(Member, d.member_id))
        if member is not None:
            set_committed_value(member, "assistant_id", plan[d.member_id])
        old = identity_map.get(session.identity_key(Assignment, d.assignment_id))
        if old is not None:
            set_committed_value(old, "ended_on", today)
            set_committed_value(old, "end_reason", NO_PURCHASE)
