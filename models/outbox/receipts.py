"""SMS receipts and provider refusals: the provider's state, which never moves backwards,
and what it and a refusal change in the outbox and for the member.

MESSAGING.md "States of an outgoing message": `queued → sending → sent → delivered`,
with `failed` / `undelivered` final; "a status callback may arrive before the send
call has returned; it must not be lost, and a state never moves backwards".

Twilio's callbacks can arrive out of order (a late `sent` after `delivered`), twice,
or before our own send call has returned. So each receipt is kept by the provider's
message id (`sms_receipts.provider_id`) and changed only forward, by one conditional
statement, which makes concurrent callbacks for one message safe on both engines.
The outbox follows these receipts (`apply_receipt`): the status
callback applies each forward move to the message sent as that provider id, and the
sender, when it records the provider id, first records the send call's own answer here
(INSERT … ON CONFLICT DO NOTHING on the unique provider id) and then applies whatever
the receipt says — so a callback that raced ahead of the send call's answer is applied
then. The unique key orders the two transactions on PostgreSQL: whichever inserts
second waits for the first to commit and then sees its row.

`record_receipt` keeps a receipt (forward only); `apply_receipt` brings a message up to
its receipt's state; `record_refusal` turns a refusal for good into the member's stop
or a bad address. The states and moves are in `models.outbox.states`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import consent
from models.db import insert_ignore, is_postgres
from models.outbox.states import (
    DELIVERED,
    UNDELIVERABLE,
    aware,
    can_transition,
    transition,
)
from models.tables.members import Identity, Member
from models.tables.outbox import OutboxMessage, SmsReceipt

# Twilio's message states, in delivery order. States of equal rank do not replace each
# other: a message that `failed` never becomes `delivered`, nor the other way round.
RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 4,
    "read": 5,
}
FINAL = frozenset({"undelivered", "failed", "canceled"})
"""No later state replaces these (a failed message is never `read`)."""


def can_move(current: str, new: str) -> bool:
    """Whether a message in state `current` may go to `new` (a known state, strictly later)."""
    if new not in RANK or current in FINAL:
        return False
    if current not in RANK:
        return True
    return RANK[new] > RANK[current]


def predecessors(new: str) -> list[str]:
    """Every known state from which `new` is a forward move."""
    return [s for s in RANK if can_move(s, new)]


async def record_receipt(
    session: AsyncSession,
    *,
    provider_id: str,
    status: str,
    error_code: str | None,
    at: datetime,
) -> bool:
    """Record that the provider reports `status` for message `provider_id`.

    Returns True when the stored state changed (first report, or a forward move),
    False when the report was stale or unknown and is ignored. Never commits.
    """
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    status = status.strip().lower()
    if status not in RANK:
        return False
    dialect = session.bind.dialect.name
    stmt = (
        insert_ignore(dialect, SmsReceipt.__table__)
        .values(
            provider_id=provider_id,
            status=status,
            error_code=error_code,
            created_at=at,
            updated_at=at,
        )
        .on_conflict_do_nothing(index_elements=["provider_id"])
        .returning(SmsReceipt.__table__.c.id)
    )
    if (await session.exec(stmt)).first() is not None:
        return True
    moved = await session.exec(
        update(SmsReceipt)
        .where(SmsReceipt.provider_id == provider_id, SmsReceipt.status.in_(predecessors(status)))
        .values(status=status, error_code=error_code, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    return moved.rowcount == 1


async def get_receipt(session: AsyncSession, *, provider_id: str) -> SmsReceipt | None:
    return (
        await session.exec(select(SmsReceipt).where(SmsReceipt.provider_id == provider_id))
    ).first()


STOPPED, BAD_ADDRESS = "stopped", "bad_address"


async def record_refusal(
    session: AsyncSession, *, message: OutboxMessage, kind: str, source: str, now: datetime
) -> None:
    """What a refusal for good says about the member, beyond this message (MESSAGING.md
    "SMS (Twilio)"): `stopped` (Twilio 21610: the member replied STOP to the carrier) →
    the member's stop, channel "provider", `source` as proof; `bad_address` (21211 /
    21614: invalid or not a mobile number) → the identity marked bad, so nothing is
    sent to it again. Other kinds change nothing. Never commits."""
    aware(now)
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
    (`record_receipt`): `delivered` → delivered, `undelivered` / `failed` →
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
