"""Pending actions: a step that waits for 确认 / CONFIRM / YES (CONTRACT.md).

One pending action per sender (channel + address), stored in `pending_actions`
(the conversation around it: `bot.handlers.pending`):

- `put` stores (or replaces) it with a fresh random token, in one statement, so two
  simultaneous requests of one sender leave exactly one row;
- it is live (`is_live`) until confirmed or its window ends; a confirmed action is
  kept (``completed_at``, `complete`) until the window ends or the sender writes
  again, so a repeated confirmation gets the same answer — and, through the
  idempotency key derived from the token, never a second voucher.

The token, not the row id, names the action in idempotency keys: SQLite may give a
deleted row's id to the next row.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import insert_ignore
from models.tables.conversation import PendingAction

REDEEM = "redeem"
MAIL_CARD = "mail_card"


def is_live(row: PendingAction, now: datetime) -> bool:
    """Waiting for a confirmation: not confirmed yet and inside its window."""
    return row.completed_at is None and now < row.expires_at


def in_window(row: PendingAction, now: datetime) -> bool:
    return now < row.expires_at


def payload(row: PendingAction) -> dict:
    return json.loads(row.payload or "{}")


async def locked(session: AsyncSession, *, channel: str, sender: str) -> PendingAction | None:
    """The sender's pending action, whatever its state, read again and locked for the rest
    of the transaction."""
    stmt = (
        select(PendingAction)
        .where(PendingAction.channel == channel, PendingAction.sender == sender)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(stmt)).first()


async def put(
    session: AsyncSession,
    *,
    channel: str,
    sender: str,
    member_id: int,
    kind: str,
    data: dict,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Store `kind` for the sender, replacing any earlier pending action."""
    values = dict(
        channel=channel,
        sender=sender,
        member_id=member_id,
        kind=kind,
        payload=json.dumps(data, ensure_ascii=False),
        token=secrets.token_hex(16),
        created_at=now,
        expires_at=expires_at,
        completed_at=None,
    )
    table = PendingAction.__table__
    stmt = insert_ignore(session.bind.dialect.name, table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel", "sender"],
        set_={k: v for k, v in values.items() if k not in ("channel", "sender")},
    )
    await session.exec(stmt)


async def delete(session: AsyncSession, *, row: PendingAction) -> None:
    await session.delete(row)
    await session.flush()


async def complete(session: AsyncSession, *, row: PendingAction, now: datetime) -> None:
    """The action was carried out: kept, confirmed, until its window ends."""
    if row.completed_at is None:
        row.completed_at = now
        session.add(row)
        await session.flush()
