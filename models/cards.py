"""The card tracker: a member's card application from request to pickup (DOMAIN.md §5, 003).

Steps, in order::

    applied → entered → sent_to_head_office → approved → notified → notified_again
            → mailed → picked_up

plus ``rejected`` (head office said no) and ``cancelled`` (withdrawn, or voided
because an application for a higher tier replaced it).

Allowed steps (anything else is `Conflict`, which the API answers with 409):

- each status to the next one in the list above;
- ``approved``, ``notified``, ``notified_again`` → ``picked_up`` (the member came)
  or ``mailed`` (the member asked for the card to be posted);
- ``mailed`` → ``picked_up`` (the member received it);
- ``sent_to_head_office`` → ``rejected``;
- ``applied``, ``entered``, ``sent_to_head_office`` → ``cancelled``.

``picked_up``, ``rejected`` and ``cancelled`` are final. Asking for the status an
application already has is a no-op that returns it unchanged, so a retried API
call is harmless. Every step appends a `CardEvent` (from, to, at, actor, note).

Concurrency: every change first locks the member row and then the application
row (`SELECT … FOR UPDATE`, always in that order, the same order the purchase
path uses), so two concurrent steps are serialised and the second one sees the
first one's result. SQLite serialises whole transactions (`BEGIN IMMEDIATE`).

Silver → gold (DOMAIN.md §5): opening an application for a higher tier cancels
the member's open (not yet approved) applications for lower tiers; the history
stays. A card already approved can no longer be cancelled and is left as it is.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import add_months
from models.errors import Conflict, InvalidInput, NotFound
from models.rules import LoyaltyRules
from models.tables.cards import CardApplication, CardEvent
from models.tables.ledger import TierChange
from models.tables.members import Member

STATUSES: tuple[str, ...] = (
    "applied",
    "entered",
    "sent_to_head_office",
    "approved",
    "notified",
    "notified_again",
    "mailed",
    "picked_up",
    "rejected",
    "cancelled",
)

TRANSITIONS: dict[str, frozenset[str]] = {
    "applied": frozenset({"entered", "cancelled"}),
    "entered": frozenset({"sent_to_head_office", "cancelled"}),
    "sent_to_head_office": frozenset({"approved", "rejected", "cancelled"}),
    "approved": frozenset({"notified", "picked_up", "mailed"}),
    "notified": frozenset({"notified_again", "picked_up", "mailed"}),
    "notified_again": frozenset({"mailed", "picked_up"}),
    "mailed": frozenset({"picked_up"}),
    "picked_up": frozenset(),
    "rejected": frozenset(),
    "cancelled": frozenset(),
}

OPEN: frozenset[str] = frozenset({"applied", "entered", "sent_to_head_office"})
"""Not yet approved: these can still be cancelled."""
ACTIVE: frozenset[str] = OPEN | {"approved", "notified", "notified_again", "mailed"}
"""The card is under way (not yet received, not refused or withdrawn)."""


def check_status(name: str) -> str:
    if name not in TRANSITIONS:
        raise InvalidInput(f"unknown status {name!r}; valid: {', '.join(STATUSES)}", "status")
    return name


def can_step(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


async def _lock_member(session: AsyncSession, member_id: int) -> Member:
    stmt = (
        select(Member)
        .where(Member.id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(stmt)).one()


async def _lock_application(session: AsyncSession, application_id: int) -> CardApplication | None:
    stmt = (
        select(CardApplication)
        .where(CardApplication.id == application_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(stmt)).first()


def _step(
    session: AsyncSession,
    app: CardApplication,
    to_status: str,
    *,
    actor: str,
    now: datetime,
    note: str = "",
) -> CardEvent:
    event = CardEvent(
        application_id=app.id,
        from_status=app.status,
        to_status=to_status,
        at=now,
        actor=actor,
        note=note,
    )
    app.status = to_status
    app.updated_at = now
    session.add(app)
    session.add(event)
    return event


def _rank(rules: LoyaltyRules | None, code: str | None) -> int:
    return rules.tiers.index(code) if rules is not None else 0


def replaced_by(active: list, tier: str, rules: LoyaltyRules | None) -> list:
    """Which of the member's `active` applications (none for `tier` itself) a new one for
    `tier` cancels: the open ones for lower tiers (without `rules`, every open one)."""
    new_rank = _rank(rules, tier)
    return [
        app
        for app in active
        if app.status in OPEN and (rules is None or _rank(rules, app.tier) < new_rank)
    ]


def replaced_note(tier: str) -> str:
    return f"replaced by {tier}"


def clears_eligible(eligible_tier: str | None, tier: str, rules: LoyaltyRules | None) -> bool:
    """Whether an application for `tier` covers the member's eligible-but-not-applied flag."""
    if not eligible_tier:
        return False
    return eligible_tier == tier or (
        rules is not None and _rank(rules, eligible_tier) <= _rank(rules, tier)
    )


async def open_application(
    session: AsyncSession,
    *,
    member: Member,
    tier: str,
    actor: str,
    now: datetime,
    rules: LoyaltyRules | None = None,
    store_id: int | None = None,
    assistant_id: int | None = None,
    note: str = "",
) -> CardApplication:
    """Open a card application for `tier`, or return the one already under way.

    Idempotent: if the member has an active application (see `ACTIVE`) for this tier,
    it is returned unchanged. Otherwise open applications for lower tiers are
    cancelled (with `rules`, "lower" follows the tier order; without, every open
    application for another tier counts as replaced), a new one starts at
    ``applied``, and the member's eligible-but-not-applied flag is cleared when this
    application covers it. `store_id`/`assistant_id` default to the member's.
    """
    member = await _lock_member(session, member.id)
    rows = await session.exec(
        select(CardApplication)
        .where(CardApplication.member_id == member.id, col(CardApplication.status).in_(ACTIVE))
        .order_by(col(CardApplication.id))
        .with_for_update()
    )
    active = list(rows)
    for app in active:
        if app.tier == tier:
            return app
    for app in replaced_by(active, tier, rules):
        _step(session, app, "cancelled", actor=actor, now=now, note=replaced_note(tier))

    app = CardApplication(
        member_id=member.id,
        tier=tier,
        status="applied",
        store_id=store_id if store_id is not None else member.store_id,
        assistant_id=assistant_id if assistant_id is not None else member.assistant_id,
        created_at=now,
        updated_at=now,
    )
    session.add(app)
    await session.flush()
    session.add(
        CardEvent(
            application_id=app.id,
            from_status="",
            to_status="applied",
            at=now,
            actor=actor,
            note=note,
        )
    )
    if clears_eligible(member.eligible_tier, tier, rules):
        member.eligible_tier = None
        member.eligible_since = None
        session.add(member)
    await session.flush()
    return app


async def advance(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    application_id: int,
    to_status: str,
    actor: str,
    now: datetime,
    note: str = "",
    pickup_date: date | None = None,
    mail_address: str | None = None,
    tz: tzinfo | None = None,
) -> CardApplication:
    """Move an application one step (see the module docstring for the allowed steps).

    - Unknown id → `NotFound` (field ``id``); unknown status → `InvalidInput`
      (``status``); a step not allowed → `Conflict` (``status``); the same status
      again → no-op.
    - `pickup_date` (the day the member agreed to come) and `mail_address` are stored
      when given; ``mailed`` without an address keeps the one on file.
    - On ``approved``, when the tier takes effect on approval, the member's tier
      changes (a `TierChange` with reason ``card_approved``) from the brand day of
      `now` (`now` read in `tz` when given, else in its own timezone).
    """
    check_status(to_status)
    found = await session.get(CardApplication, application_id)
    if found is None:
        raise NotFound(f"no card application {application_id}", "id")
    member = await _lock_member(session, found.member_id)
    app = await _lock_application(session, application_id)
    if app is None:
        raise NotFound(f"no card application {application_id}", "id")
    if app.status == to_status:
        return app
    if not can_step(app.status, to_status):
        raise Conflict(f"illegal step {app.status} → {to_status}", "status")
    if pickup_date is not None:
        app.pickup_date = pickup_date
    if mail_address is not None:
        app.mail_address = mail_address
    elif to_status == "mailed" and app.mail_address is None:
        app.mail_address = member.address
    _step(session, app, to_status, actor=actor, now=now, note=note)
    if to_status == "approved":
        on = (now.astimezone(tz) if tz is not None else now).date()
        _take_effect(session, rules=rules, member=member, tier=app.tier, on=on, at=now)
    await session.flush()
    return app


def _take_effect(
    session: AsyncSession, *, rules: LoyaltyRules, member: Member, tier: str, on: date, at: datetime
) -> TierChange | None:
    """An approved card makes its tier effective when the level says ``on_approval``.

    Never a downgrade: a member already at this tier or above keeps theirs.
    """
    level = rules.tiers.find(tier)
    if level is None or level.effective != "on_approval":
        return None
    tiers = rules.tiers
    if tiers.index(member.tier) >= tiers.index(tier):
        return None
    change = TierChange(
        member_id=member.id,
        from_tier=member.tier or tiers.entry.code,
        to_tier=tier,
        on=on,
        reason="card_approved",
        at=at,
    )
    member.tier = tier
    member.tier_since = on
    member.tier_expires = add_months(on, level.valid_months) if level.valid_months else None
    if member.eligible_tier and tiers.index(member.eligible_tier) <= tiers.index(tier):
        member.eligible_tier = None
        member.eligible_since = None
    session.add(member)
    session.add(change)
    return change


async def set_pickup_date(
    session: AsyncSession, *, application: CardApplication, day: date, now: datetime
) -> None:
    """The day the member will come for a card already announced: only the date changes
    (no status step, so no event: the tracker's steps stay the store's steps)."""
    application.pickup_date = day
    application.updated_at = now
    session.add(application)
    await session.flush()
