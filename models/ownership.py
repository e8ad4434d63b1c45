"""Member ownership: which assistant (導購) owns a member (DOMAIN.md §8; sources 000 §18, 001).

- A new owner keeps a member on probation for `OwnershipRules.probation_months`
  calendar months (default 2) from the day of assignment: `probation_until` is
  `add_months(start_on, n)` and is the last day that counts.
- A purchase dated within [start_on, probation_until] *establishes* the
  assignment: the owner keeps the member for good, whoever served the sale.
  After a redistribution that owner is the assistant the member was given to
  ("when a reassigned member buys, the new assistant owns them").
- A member who has not bought by the end of probation is taken back by the daily
  job (`redistribute`) and handed, within the member's store, to an active
  assistant who has never owned them before (001 "同個會員不會第二次分配給同一個導購"),
  spreading the day's members evenly and at random, tier by tier ("the same
  number and quality of diamond / gold / ordinary members", 000 §18). When no
  such assistant is left the member becomes unowned.
- A purchase after probation ended does not rescue the assignment, even if the
  daily job has not run yet: the outcome depends on dates only, never on when
  the job happened to run (a job catching up after downtime decides the same).
- An unowned member who buys is owned, established, by the assistant who served
  the sale (a member's own choice, so earlier owners are not excluded).

`assignments` is the history (closed rows are never reopened); `members.assistant_id`
is the current owner, changed in the same transaction. No function here commits.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, insert, update
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import add_months
from models.errors import DomainError, InvalidInput, NotFound
from models.redistribution import Due, plan_redistribution
from models.rules import LoyaltyRules
from models.tables.members import Assignment, Assistant, Member
from models.tables.purchases import Purchase

OPENED = "opened"
MANUAL = "manual"
PURCHASE = "purchase"
REDISTRIBUTED = "redistributed"
ASSIGN_REASONS = frozenset({OPENED, MANUAL, PURCHASE, REDISTRIBUTED})

REASSIGNED = "reassigned"  # end_reason: another assistant was assigned
NO_PURCHASE = "no_purchase"  # end_reason: probation ended without a purchase
NO_ELIGIBLE = "no_eligible_assistant"  # Reassignment.reason: the member is now unowned


@dataclass(frozen=True)
class Reassignment:
    """One member taken back by `redistribute`. `reason` is "redistributed" (given to
    `to_assistant_id`) or "no_eligible_assistant" (now unowned, `to_assistant_id` None)."""

    member_id: int
    from_assistant_id: int
    to_assistant_id: int | None
    reason: str


async def _open_assignments(session: AsyncSession, member_id: int) -> list[Assignment]:
    stmt = (
        select(Assignment)
        .where(Assignment.member_id == member_id, Assignment.ended_on == None)  # noqa: E711
        .order_by(Assignment.id)
    )
    return list((await session.exec(stmt)).all())


async def assign(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    member: Member,
    assistant_id: int,
    on: date,
    reason: str = OPENED,
) -> Assignment:
    """Make `assistant_id` the member's owner from `on`, on probation.

    Closes the member's open assignment (end_reason "reassigned") and opens a new
    one; assigning the current owner again changes nothing and returns the open
    assignment (so a retried import is harmless). `reason`: "opened" (card opened
    with this assistant), "manual" (staff), "purchase", "redistributed".
    The assistant must exist (NotFound) and be active (InvalidInput).
    """
    if reason not in ASSIGN_REASONS:
        raise InvalidInput(f"unknown assignment reason {reason!r}", "reason")
    assistant = await session.get(Assistant, assistant_id)
    if assistant is None:
        raise NotFound(f"no assistant with id {assistant_id}", "assistant")
    if not assistant.active:
        raise InvalidInput(f"assistant {assistant.code!r} is not active", "assistant")
    if member.id is None:
        session.add(member)
        await session.flush()
    assert member.id is not None
    current = await _open_assignments(session, member.id)
    if len(current) == 1 and current[0].assistant_id == assistant_id:
        member.assistant_id = assistant_id
        session.add(member)
        return current[0]
    for old in current:
        old.ended_on, old.end_reason = on, REASSIGNED
        session.add(old)
    new = Assignment(
        member_id=member.id,
        assistant_id=assistant_id,
        start_on=on,
        probation_until=add_months(on, rules.ownership.probation_months),
        reason=reason,
    )
    session.add(new)
    member.assistant_id = assistant_id
    session.add(member)
    await session.flush()
    return new


async def on_purchase(
    session: AsyncSession, *, rules: LoyaltyRules, member: Member, purchase: Purchase
) -> None:
    """Ownership consequences of a new purchase (call once per recorded purchase).

    - Open assignment on probation and the purchase's day within
      [start_on, probation_until]: the assignment is established (the owner keeps
      the member). A purchase after probation_until changes nothing: the daily job
      takes the member back (see the module docstring).
    - No open assignment: the member's owner becomes the assistant of
      `members.assistant_id` (a member recorded without history) or else the
      assistant who served the sale, established at once (reason "purchase").
      Nothing happens when there is no such assistant or it is inactive.
    """
    assert member.id is not None
    day = purchase.local_date
    current = await _open_assignments(session, member.id)
    if current:
        for a in current:
            if not a.established and a.start_on <= day <= a.probation_until:
                a.established = True
                session.add(a)
        await session.flush()
        return
    owner_id = member.assistant_id or purchase.assistant_id
    if owner_id is None:
        return
    owner = await session.get(Assistant, owner_id)
    if owner is None or not owner.active:
        return
    new = await assign(
        session, rules=rules, member=member, assistant_id=owner_id, on=day, reason=PURCHASE
    )
    new.established = True
    session.add(new)
    await session.flush()


async def owned_members(session: AsyncSession, *, assistant_id: int) -> list[Member]:
    """The members the assistant owns now (`members.assistant_id`), by id."""
    stmt = select(Member).where(Member.assistant_id == assistant_id).order_by(Member.id)
    return list((await session.exec(stmt)).all())


class NotOwner(DomainError):
    """The member is not (or no longer) this assistant's: 403."""

    status = 403

    def __init__(self) -> None:
        super().__init__("this member is not assigned to you", "member")


async def owner_id(session: AsyncSession, *, member: Member) -> int | None:
    """The assistant who owns `member` now.

    The open assignment decides; a member with no open assignment (recorded without
    history, e.g. imported with an assistant) is owned by ``members.assistant_id``,
    the reading `on_purchase` also takes. None: unowned.
    """
    stmt = (
        select(Assignment.assistant_id)
        .where(Assignment.member_id == member.id, Assignment.ended_on == None)  # noqa: E711
        .order_by(col(Assignment.id).desc())
        .limit(1)
    )
    current = (await session.exec(stmt)).first()
    return current if current is not None else member.assistant_id


async def owns(session: AsyncSession, *, assistant_id: int, member_id: int) -> bool:
    """True when the member exists and `assistant_id` owns them now (`owner_id`)."""
    member = await session.get(Member, member_id)
    if member is None:
        return False
    return await owner_id(session, member=member) == assistant_id


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
