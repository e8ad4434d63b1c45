"""Provider refusals and SMS receipts: what they change in the outbox and for the member.

`record_refusal` turns a refusal for good into the member's stop or a bad
address; `apply_receipt` brings a message up to its Twilio status callback's
state (forward only).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import consent
from models.db import insert_ignore, is_postgres
from models.sms_receipts import get_receipt
from models.tables import Identity, Member, OutboxMessage
from scheduler.outbox_states import (
    DELIVERED,
    UNDELIVERABLE,
    aware,
    can_transition,
    transition,
)

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
