"""The outbox: states of an outgoing message, every change recorded, and claims for sending.

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

Claims (`claim`): due messages are `queued` with `send_after <= now`, `failed` with
`next_attempt_at <= now` (attempts left), or `sending` with a claim older than
`claim_timeout` (the process died mid-send). On PostgreSQL they are selected
`FOR UPDATE SKIP LOCKED`, so concurrent claimers get disjoint rows; on SQLite every
transaction is `BEGIN IMMEDIATE` (models/db.py), which serialises claimers.

Delivery guarantee (claim → send → record, each its own transaction; no transaction is
held across the network call): a message is sent exactly once, except at one boundary —
the provider accepted it but we never learnt so. That happens when the process dies
(or loses its database) between the provider's acceptance and our record: the claim
expires after `claim_timeout` and the message is sent again; and when the provider's
answer does not arrive in time (a timeout is retried, but the provider may have
accepted it). The send calls used here carry no idempotency key that could close that
gap, so the outbox is at-least-once there and exactly once everywhere else. A stale claim counts
as an attempt, so a message that kills the process every time gives up after
`max_attempts`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Integer, and_, any_, bindparam, insert, or_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import consent
from models.db import insert_ignore, is_postgres
from models.sms_receipts import get_receipt, record_receipt
from models.tables import Identity, Member, OutboxEvent, OutboxMessage, SmsReceipt
from models.types import UTCDateTime

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


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    return at


def _clip(reason: str | None) -> str | None:
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
    _aware(now)
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
    values = {"status": to_status, "reason": _clip(reason), "updated_at": now, **fields}
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
            reason=_clip(reason),
        )
    )  # fmt: skip
    if message is not None:
        for key, value in values.items():
            set_committed_value(message, key, value)
    return True


async def claim(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    channel: str | Collection[str] | None = None,
    max_attempts: int = 8,
    claim_timeout: float = 300.0,
) -> list[OutboxMessage]:
    """Take up to `limit` due messages (oldest `send_after` first) and mark them `sending`
    with `claimed_at = now`. Commit right after (the caller's transaction): the claim is
    what keeps other senders off these rows while this one sends.

    A stale claim (older than `claim_timeout` seconds) is taken over and counted as an
    attempt; one that has used up `max_attempts` becomes `failed` / "gave up" instead.
    `channel` restricts the claim to one channel or a set of channels.
    """
    _aware(now)
    if limit <= 0:
        return []
    m = OutboxMessage
    stale_before = now - timedelta(seconds=claim_timeout)
    due = or_(
        and_(m.status == QUEUED, m.send_after <= now),
        and_(
            m.status == FAILED,
            m.next_attempt_at.is_not(None),
            m.next_attempt_at <= now,
            m.attempts < max_attempts,
        ),
        and_(m.status == SENDING, m.claimed_at < stale_before),
    )
    stmt = select(m).where(due)
    if channel is not None:
        channels = [channel] if isinstance(channel, str) else list(channel)
        stmt = stmt.where(m.channel.in_(channels))
    stmt = stmt.order_by(m.send_after, m.id).limit(limit)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.exec(stmt)).all())

    claimed: list[OutboxMessage] = []
    fresh: list[OutboxMessage] = []
    for msg in rows:
        if msg.status != SENDING:
            fresh.append(msg)
            continue
        attempts = msg.attempts + 1
        if attempts >= max_attempts:
            await transition(
                session, message=msg, from_status=SENDING, to_status=FAILED, now=now,
                reason=f"{GAVE_UP}: {CLAIM_EXPIRED}", attempts=attempts,
                next_attempt_at=None, claimed_at=None,
            )  # fmt: skip
        elif await transition(
            session, message=msg, from_status=SENDING, to_status=SENDING, now=now,
            reason=f"reclaimed: {CLAIM_EXPIRED}", attempts=attempts, claimed_at=now,
        ):  # fmt: skip
            claimed.append(msg)
    if fresh:
        ids = [msg.id for msg in fresh]
        await session.exec(
            update(m)
            .where(m.id.in_(ids))
            .values(status=SENDING, claimed_at=now, reason=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await session.exec(
            insert(OutboxEvent),
            params=[
                {"message_id": msg.id, "from_status": msg.status, "to_status": SENDING,
                 "at": now, "reason": None}
                for msg in fresh
            ],
        )  # fmt: skip
        for msg in fresh:
            for key, value in (("status", SENDING), ("claimed_at", now), ("reason", None),
                               ("updated_at", now)):  # fmt: skip
                set_committed_value(msg, key, value)
        claimed.extend(fresh)
    claimed.sort(key=lambda msg: (msg.send_after, msg.id))
    return claimed


@dataclass(frozen=True, slots=True)
class Accepted:
    """A provider took a claimed message (what `record_sent` records)."""

    message_id: int
    claimed_at: datetime
    """The claim the sender held: the record applies only if it still holds it."""
    via: str
    provider_id: str | None = None
    provider_status: str = "sent"
    receipts: bool = False
    """The provider reports delivery later by `provider_id` (Twilio status callbacks)."""


async def record_sent(
    session: AsyncSession, *, accepted: Sequence[Accepted], now: datetime
) -> set[int]:
    """`sending → sent` for many messages at once — the sender's hot path, a handful of
    statements whatever the number — with the provider id, `attempts + 1` and an event
    each. Returns the ids that moved (a message whose claim was taken over does not).

    For receipt-reporting providers the send call's own answer is recorded in
    `sms_receipts` first (INSERT … ON CONFLICT DO NOTHING): a status callback that got
    there before this record is then found by its conflict and applied
    (`apply_receipt`), so it is not lost, and on PostgreSQL the unique key orders this
    transaction and the callback's. Never commits.
    """
    _aware(now)
    if not accepted:
        return set()
    early: list[Accepted] = []
    with_receipts = [a for a in accepted if a.receipts and a.provider_id]
    if with_receipts:
        table = SmsReceipt.__table__
        stmt = (
            insert_ignore(session.bind.dialect.name, table)
            .on_conflict_do_nothing(index_elements=["provider_id"])
            .returning(table.c.provider_id)
        )
        rows = [
            {"provider_id": a.provider_id, "status": a.provider_status, "error_code": None,
             "created_at": now, "updated_at": now}
            for a in with_receipts
        ]  # fmt: skip
        inserted = set((await session.exec(stmt, params=rows)).scalars())
        early = [a for a in with_receipts if a.provider_id not in inserted]
        for a in early:  # a callback was first: keep the later of the two states
            await record_receipt(
                session, provider_id=a.provider_id, status=a.provider_status,
                error_code=None, at=now,
            )  # fmt: skip
    # One statement, executed for every message (compiled once, cached): conditional on
    # the message still being `sending` under the claim the sender held.
    t = OutboxMessage.__table__
    updated = await session.exec(
        update(t)
        .where(
            t.c.id == bindparam("b_id"),
            t.c.status == SENDING,
            t.c.claimed_at == bindparam("b_claimed", type_=UTCDateTime()),
        )
        .values(
            status=SENT, provider_id=bindparam("b_provider_id"), via=bindparam("b_via"),
            attempts=t.c.attempts + 1, next_attempt_at=None, error_code=None, reason=None,
            updated_at=now,
        ),
        params=[
            {"b_id": a.message_id, "b_claimed": a.claimed_at, "b_provider_id": a.provider_id,
             "b_via": a.via}
            for a in accepted
        ],
    )  # fmt: skip
    claims = {a.message_id: a.claimed_at for a in accepted}
    if session.bind.dialect.supports_sane_multi_rowcount and updated.rowcount == len(claims):
        moved = set(claims)
    else:  # which ones moved: `sent` under the claim we held (no per-row count here)
        ids = sorted(claims)
        in_ids = (
            t.c.id == any_(bindparam("ids", ids, type_=postgresql.ARRAY(Integer)))
            if is_postgres(session)  # one statement text whatever the count: prepared once
            else t.c.id.in_(ids)
        )
        rows = await session.exec(select(t.c.id, t.c.claimed_at).where(in_ids, t.c.status == SENT))
        moved = {mid for mid, claimed_at in rows.all() if claimed_at == claims[mid]}
    if moved:
        await session.exec(
            insert(OutboxEvent),
            params=[
                {"message_id": i, "from_status": SENDING, "to_status": SENT, "at": now,
                 "reason": None}
                for i in sorted(moved)
            ],
        )  # fmt: skip
    for a in early:
        if a.message_id in moved:
            await apply_receipt(session, provider_id=a.provider_id, now=now)
    return moved


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
    _aware(now)
    _aware(send_after)
    if status not in (PLANNED, QUEUED, SUPPRESSED):
        raise ValueError(f"a new message is planned, queued or suppressed, not {status!r}")
    table = OutboxMessage.__table__
    stmt = (
        insert_ignore(session.bind.dialect.name, table)
        .values(
            member_id=member_id, kind=kind, occasion=occasion, planned_on=planned_on,
            store_id=store_id, assistant_id=assistant_id, locale=locale, text=text,
            channel=channel, via=via, address=address, status=status, reason=_clip(reason),
            send_after=send_after, attempts=0, created_at=now, updated_at=now,
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
            reason=_clip(reason),
        )
    )  # fmt: skip
    return await session.get(OutboxMessage, new_id)


# --------------------------------------------------------------- provider refusals, receipts

STOPPED, BAD_ADDRESS = "stopped", "bad_address"


async def record_refusal(
    session: AsyncSession, *, message: OutboxMessage, kind: str, source: str, now: datetime
) -> None:
    """What a refusal for good says about the member, beyond this message (MESSAGING.md
    "SMS (Twilio)"): `stopped` (Twilio 21610: the member replied STOP to the carrier) →
    the member's stop, channel "provider", `source` as proof; `bad_address` (21211 /
    21614: invalid or not a mobile number) → the identity marked bad, so nothing is
    sent to it again. Other kinds change nothing. Never commits."""
    _aware(now)
    if kind == STOPPED:
        member = await session.get(Member, message.member_id)
        if member is not None:
            await consent.stop(session, member=member, channel="provider", at=now, source=source)
    elif kind == BAD_ADDRESS:
        await mark_address_bad(
            session, member_id=message.member_id, channel=message.channel,
            address=message.address, reason=source, now=now,
        )  # fmt: skip


async def mark_address_bad(
    session: AsyncSession,
    *,
    member_id: int | None,
    channel: str,
    address: str,
    reason: str,
    now: datetime,
) -> None:
    """Mark (channel, address) bad, creating the identity row if the member never had one."""
    table = Identity.__table__
    await session.exec(
        insert_ignore(session.bind.dialect.name, table)
        .values(
            member_id=member_id,
            channel=channel,
            address=address,
            active=True,
            bad=False,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["channel", "address"])
    )
    await session.exec(
        update(Identity)
        .where(Identity.channel == channel, Identity.address == address)
        .values(bad=True, bad_reason=reason[:200])
        .execution_options(synchronize_session=False)
    )


# Twilio's message states → the outbox state they mean (None: nothing to do).
_RECEIPT_TARGET = {
    "delivered": DELIVERED,
    "read": DELIVERED,
    "partially_delivered": DELIVERED,
    "undelivered": UNDELIVERABLE,
    "failed": UNDELIVERABLE,
    "canceled": UNDELIVERABLE,
}
RECEIPT_REFUSALS = {"21610": STOPPED, "21211": BAD_ADDRESS, "21614": BAD_ADDRESS}
"""Error codes of a failed status callback that say something about the member."""


async def apply_receipt(session: AsyncSession, *, provider_id: str, now: datetime) -> bool:
    """Bring the outbox message sent as `provider_id` up to its SMS receipt's state
    (`models.sms_receipts`): `delivered` → delivered, `undelivered` / `failed` →
    undeliverable (with the error code; 21610 and 21211/21614 act as in
    `record_refusal`). Forward only; returns whether the message moved. Never commits.

    Called by the status callback after recording the receipt, and by the sender right
    after recording the provider id — so a callback that arrived before the send call
    returned is applied then (the receipt row's unique key orders the two transactions).
    """
    receipt = await get_receipt(session, provider_id=provider_id)
    if receipt is None or receipt.status not in _RECEIPT_TARGET:
        return False
    target = _RECEIPT_TARGET[receipt.status]
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.provider_id == provider_id, OutboxMessage.via == "twilio")
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update()
    message = (await session.exec(stmt)).first()
    if message is None or not can_transition(message.status, target):
        return False
    reason = None
    if target == UNDELIVERABLE:
        code = receipt.error_code
        reason = f"twilio {receipt.status}" + (f" ({code})" if code else "")
    moved = await transition(
        session, message=message, from_status=message.status, to_status=target, now=now,
        reason=reason, error_code=receipt.error_code,
    )  # fmt: skip
    if moved and target == UNDELIVERABLE and receipt.error_code in RECEIPT_REFUSALS:
        await record_refusal(
            session, message=message, kind=RECEIPT_REFUSALS[receipt.error_code],
            source=f"twilio {receipt.error_code}", now=now,
        )  # fmt: skip
    return moved


async def events(session: AsyncSession, *, message_id: int) -> list[OutboxEvent]:
    """The message's history, oldest first."""
    stmt = (
        select(OutboxEvent)
        .where(OutboxEvent.message_id == message_id)
        .order_by(OutboxEvent.at, OutboxEvent.id)
    )
    return list((await session.exec(stmt)).all())
