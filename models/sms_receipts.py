"""Delivery receipts of outgoing SMS: the provider's state, which never moves backwards.

MESSAGING.md "States of an outgoing message": `queued → sending → sent → delivered`,
with `failed` / `undelivered` final; "a status callback may arrive before the send
call has returned; it must not be lost, and a state never moves backwards".

Twilio's callbacks can arrive out of order (a late `sent` after `delivered`), twice,
or before our own send call has returned. So each receipt is kept by the provider's
message id (`sms_receipts.provider_id`) and changed only forward, by one conditional
statement, which makes concurrent callbacks for one message safe on both engines.
The outbox follows these receipts (`scheduler.outbox_receipts.apply_receipt`): the status
callback applies each forward move to the message sent as that provider id, and the
sender, when it records the provider id, first records the send call's own answer here
(INSERT … ON CONFLICT DO NOTHING on the unique provider id) and then applies whatever
the receipt says — so a callback that raced ahead of the send call's answer is applied
then. The unique key orders the two transactions on PostgreSQL: whichever inserts
second waits for the first to commit and then sees its row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import insert_ignore
from models.tables import SmsReceipt

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
