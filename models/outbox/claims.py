"""Claiming due outbox messages for sending, and recording what the providers took.

`claim` takes due messages (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and marks
them ``sending``; `record_sent` moves many accepted messages to ``sent`` in a
handful of statements (the sender's hot path). The states and moves are in
`models.outbox.states`.

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
from datetime import datetime, timedelta

from sqlalchemy import Integer, and_, any_, bindparam, insert, or_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import insert_ignore, is_postgres
from models.outbox.receipts import apply_receipt, record_receipt
from models.outbox.states import (
    CLAIM_EXPIRED,
    FAILED,
    GAVE_UP,
    QUEUED,
    SENDING,
    SENT,
    aware,
    transition,
)
from models.tables.outbox import OutboxEvent, OutboxMessage, SmsReceipt
from models.types import UTCDateTime


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
    aware(now)
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
    aware(now)
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
