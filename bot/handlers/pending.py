"""Steps that wait for 确认 / CONFIRM / YES: a redemption, mailing a card (CONTRACT.md).

One pending action per sender (channel + address), stored in `pending_actions`:

- `put` stores (or replaces) it with a fresh random token and a 10-minute expiry;
- the sender's next message decides: a confirmation within the window carries it
  out (`bot.bot` dispatches to the kind's confirm handler), a stop word cancels it
  and stops, anything else cancels it and is then handled normally;
- a confirmed action is kept (``completed_at``) until the window ends or the
  sender writes again, so a repeated confirmation gets the same answer instead of
  "nothing to confirm" — and, through the idempotency key derived from the token,
  never a second voucher.

The token, not the row id, names the action in idempotency keys: SQLite may give a
deleted row's id to the next row.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta

from sqlmodel import select

from bot.handlers.turn import CONFIRM_WINDOW_MINUTES, Turn
from models.db import insert_ignore, is_postgres
from models.tables import PendingAction

REDEEM = "redeem"
MAIL_CARD = "mail_card"


def is_live(row: PendingAction, now: datetime) -> bool:
    """Waiting for a confirmation: not confirmed yet and inside its window."""
    return row.completed_at is None and now < row.expires_at


def in_window(row: PendingAction, now: datetime) -> bool:
    return now < row.expires_at


def payload(row: PendingAction) -> dict:
    return json.loads(row.payload or "{}")


async def current(turn: Turn) -> PendingAction | None:
    """The sender's pending action, whatever its state (live, confirmed, expired), locked
    for the rest of the transaction.

    `MemberBot` reads it together with the sender (`Turn.pending`), so the common case —
    nothing pending — costs no query. A row that exists is read again under a row lock on
    PostgreSQL, where a concurrent confirmation may have changed it since; on SQLite every
    transaction already holds the database's write lock (`models.db`), so the row read
    with the sender is current.
    """
    if turn.pending_read and (turn.pending is None or not is_postgres(turn.session)):
        return turn.pending
    return await _locked(turn)


async def _locked(turn: Turn) -> PendingAction | None:
    stmt = (
        select(PendingAction)
        .where(
            PendingAction.channel == turn.inbound.channel,
            PendingAction.sender == turn.inbound.sender,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = (await turn.session.exec(stmt)).first()
    turn.pending, turn.pending_read = row, False
    return row


async def put(turn: Turn, *, kind: str, data: dict) -> PendingAction:
    """Store `kind` for the sender, replacing any earlier pending action (one statement,
    so two simultaneous requests of one sender leave exactly one row)."""
    assert turn.member is not None
    values = dict(
        channel=turn.inbound.channel,
        sender=turn.inbound.sender,
        member_id=turn.member.id,
        kind=kind,
        payload=json.dumps(data, ensure_ascii=False),
        token=secrets.token_hex(16),
        created_at=turn.now,
        expires_at=turn.now + timedelta(minutes=CONFIRM_WINDOW_MINUTES),
        completed_at=None,
    )
    table = PendingAction.__table__
    stmt = insert_ignore(turn.session.bind.dialect.name, table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel", "sender"],
        set_={k: v for k, v in values.items() if k not in ("channel", "sender")},
    )
    await turn.session.exec(stmt)
    turn.pending_created = True
    row = await _locked(turn)
    assert row is not None
    return row


async def clear(turn: Turn, row: PendingAction) -> None:
    await turn.session.delete(row)
    await turn.session.flush()
    if turn.pending is row:
        turn.pending = None


async def complete(turn: Turn, row: PendingAction) -> None:
    if row.completed_at is None:
        row.completed_at = turn.now
        turn.session.add(row)
        await turn.session.flush()
