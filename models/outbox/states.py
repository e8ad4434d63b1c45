"""Outbox states and moves: the state machine, one message's transition, a new message.

MESSAGING.md "States of an outgoing message":

    planned → queued → sending → sent → delivered
                         │  ↑
                         ↓  │ (retry, when next_attempt_at comes)
                        failed            undeliverable, suppressed, delivered: final

- `failed` is retryable: it carries `attempts` and `next_attempt_at`; after
  `outbox.max_attempts` it stays `failed` with no next try and reason "gave up".
- `undeliverable`: the provider refused for good (Twilio 21610 stop, 21211/21614 bad
  number, any other refusal). `suppressed`: decided before sending (stopped, no channel,
  a broken rule, capped, a greeting whose day has passed).
- `sending → queued` is the one move "back": the message is released without anything
  having left (deferred to the next allowed moment, re-routed to another channel, or
  held while a provider is failing). Nothing else ever moves backwards; a late `sent`
  callback after `delivered` changes nothing.

Every change is one conditional UPDATE (`… WHERE status = <from>`) plus an
`outbox_events` row, so two writers racing for one message (a sender and a status
callback, two replicas) cannot both move it. A new message's first event is
`planned → <status>`.

`transition` makes one move; `enqueue` adds a message unless its (member, kind,
occasion) exists; `events` reads a message's history. Claims and the delivery
guarantee: `models.outbox.claims`; refusals and SMS receipts:
`models.outbox.receipts`.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.context import request_id
from models.db import insert_ignore, is_postgres
from models.tables.outbox import OutboxEvent, OutboxMessage

PLANNED, QUEUED, SENDING, SENT, DELIVERED = "planned", "queued", "sending", "sent", "delivered"
FAILED, UNDELIVERABLE, SUPPRESSED = "failed", "undeliverable", "suppressed"
STATUSES = (PLANNED, QUEUED, SENDING, SENT, DELIVERED, FAILED, UNDELIVERABLE, SUPPRESSED)
FINAL = frozenset({DELIVERED, UNDELIVERABLE, SUPPRESSED})

ALLOWED: dict[str, frozenset[str]] = {
    PLANNED: frozenset({QUEUED, SUPPRESSED}),
    QUEUED: frozenset({SENDING, SUPPRESSED}),
    # sending → sending: a stale claim taken over; sending → queued: released unsent.
    SENDING: frozenset({SENDING, QUEUED, SENT, FAILED, UNDELIVERABLE, SUPPRESSED}),
    SENT: frozenset({DELIVERED, UNDELIVERABLE}),
    FAILED: frozenset({SENDING, SUPPRESSED}),
    DELIVERED: frozenset(),
    UNDELIVERABLE: frozenset(),
    SUPPRESSED: frozenset(),
}
"""Every move a message may make (MESSAGING.md); anything else is refused."""

GAVE_UP = "gave up"
CLAIM_EXPIRED = "claim expired (the process died mid-send?)"

_FIELDS = frozenset(
    {
        "channel", "via", "address", "text", "send_after", "attempts", "next_attempt_at",
        "claimed_at", "provider_id", "error_code",
    }
)  # fmt: skip
"""Columns a transition may change besides status, reason and updated_at."""


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in ALLOWED.get(from_status, frozenset())


def aware(at: datetime) -> datetime:
    """`at`, refused when naive (every outbox time is timezone-aware)."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    return at


def clip(reason: str | None) -> str | None:
    """A reason cut to the column's 200 characters."""
    return None if reason is None else reason[:200]


async def transition(
    session: AsyncSession,
    *,
    message_id: int | None = None,
    message: OutboxMessage | None = None,
    to_status: str,
    now: datetime,
    reason: str | None = None,
    from_status: str | None = None,
    if_claimed_at: datetime | None = None,
    **fields,
) -> bool:
    """Move one message to `to_status`, recording an `outbox_events` row. Never commits.

    `reason` replaces the message's reason (None clears it); `fields` are other columns
    to set in the same UPDATE (`provider_id=…`, `attempts=…`). `from_status`, when the
    caller knows it (a sender holding the claim), saves reading it first; `if_claimed_at`
    makes the move conditional on still holding that claim. Returns False, changing
    nothing, when the move is not allowed from the message's current state (including
    a concurrent writer having moved it first).
    """
    if (message_id is None) == (message is None):
        raise TypeError("pass exactly one of message_id and message")
    if to_status not in ALLOWED:
        raise ValueError(f"unknown outbox status {to_status!r}")
    unknown = set(fields) - _FIELDS
    if unknown:
        raise TypeError(f"transition cannot set {sorted(unknown)}")
    aware(now)
    mid = message.id if message is not None else message_id
    if from_status is None:
        stmt = select(OutboxMessage.status).where(OutboxMessage.id == mid)
        if is_postgres(session):
            stmt = stmt.with_for_update()
        from_status = (await session.exec(stmt)).first()
        if from_status is None:
            return False
    if not can_transition(from_status, to_status):
        return False
    where = [OutboxMessage.id == mid, OutboxMessage.status == from_status]
    if if_claimed_at is not None:
        where.append(OutboxMessage.claimed_at == if_claimed_at)
    values = {"status": to_status, "reason": clip(reason), "updated_at": now, **fields}
    result = await session.exec(
        update(OutboxMessage)
        .where(*where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    await session.exec(
        insert(OutboxEvent).values(
            message_id=mid, from_status=from_status, to_status=to_status, at=now,
            reason=clip(reason),
        )
    )  # fmt: skip
    if message is not None:
        for key, value in values.items():
            set_committed_value(message, key, value)
    return True


async def enqueue(
    session: AsyncSession,
    *,
    member_id: int,
    kind: str,
    occasion: str,
    planned_on: date,
    text: str,
    channel: str,
    via: str,
    address: str,
    send_after: datetime,
    now: datetime,
    locale: str = "zh_CN",
    store_id: int | None = None,
    assistant_id: int | None = None,
    status: str = QUEUED,
    reason: str | None = None,
) -> OutboxMessage | None:
    """Add one message unless (member_id, kind, occasion) already has one — the database's
    unique key decides, so two concurrent callers add one row. Returns the new message,
    or None when it already existed. Never commits."""
    aware(now)
    aware(send_after)
    if status not in (PLANNED, QUEUED, SUPPRESSED):
        raise ValueError(f"a new message is planned, queued or suppressed, not {status!r}")
    table = OutboxMessage.__table__
    stmt = (
        insert_ignore(session.bind.dialect.name, table)
        .values(
            member_id=member_id, kind=kind, occasion=occasion, planned_on=planned_on,
            store_id=store_id, assistant_id=assistant_id, locale=locale, text=text,
            channel=channel, via=via, address=address, status=status, reason=clip(reason),
            send_after=send_after, attempts=0, created_at=now, updated_at=now,
            request_id=request_id.get(),
        )
        .on_conflict_do_nothing(index_elements=["member_id", "kind", "occasion"])
        .returning(table.c.id)
    )  # fmt: skip
    new_id = (await session.exec(stmt)).scalar_one_or_none()
    if new_id is None:
        return None
    await session.exec(
        insert(OutboxEvent).values(
            message_id=new_id, from_status=PLANNED, to_status=status, at=now,
            reason=clip(reason),
        )
    )  # fmt: skip
    return await session.get(OutboxMessage, new_id)


async def events(session: AsyncSession, *, message_id: int) -> list[OutboxEvent]:
    """The message's history, oldest first."""
    stmt = (
        select(OutboxEvent)
        .where(OutboxEvent.message_id == message_id)
        .order_by(OutboxEvent.at, OutboxEvent.id)
    )
    return list((await session.exec(stmt)).all())
