"""Member ownership: which assistant (導購) owns a member (DOMAIN.md §8; sources 000 §18, 001).

- A new owner keeps a member on probation for `OwnershipRules.probation_months`
  calendar months (default 2) from the day of assignment: `probation_until` is
  `add_months(start_on, n)` and is the last day that counts.
- A purchase dated within [start_on, probation_until] *establishes* the
  assignment: the owner keeps the member for good, whoever served the sale.
  After a redistribution that owner is the assistant the member was given to
  ("when a reassigned member buys, the new assistant owns them").
- A member who has not bought by the end of probation is taken back by the daily
  job (`models.probation.redistribute`) and handed, within the member's store, to an active
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

from datetime import date

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import add_months
from models.errors import DomainError, InvalidInput, NotFound
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


async def _open_assignments(session: AsyncSession, member_id: int) -> list[Assignment]:
    stmt = (
        select(Assignment)
        .where(Assignment.member_id == member_id, Assignment.ended_on == None)  # noqa: E711
        .order_by(Assignment.id)
    )
    return list((await session.exec(stmt)).all())


def new_assignment(
    rules: LoyaltyRules, member_id: int, assistant_id: int, *, on: date, reason: str
) -> dict:
    """The values of a new assignment from `on`, on probation."""
    return dict(
        member_id=member_id,
        assistant_id=assistant_id,
        start_on=on,
        probation_until=add_months(on, rules.ownership.probation_months),
        reason=reason,
    )


def establishes(assignment, day: date) -> bool:
    """Whether a purchase on `day` establishes this open assignment (on probation, and
    the day within [start_on, probation_until])."""
    a = assignment
    return not a.established and a.start_on <= day <= a.probation_until


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
    new = Assignment(**new_assignment(rules, member.id, assistant_id, on=on, reason=reason))
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
            if establishes(a, day):
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
