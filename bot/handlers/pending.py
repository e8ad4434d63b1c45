"""The sender's pending action in a conversation (the rows: `models.pending`).

- `put` stores (or replaces) the sender's pending action with a 10-minute window;
- the sender's next message decides: a confirmation within the window carries it
  out (`bot.bot` dispatches to the kind's confirm handler), a stop word cancels it
  and stops, anything else cancels it and is then handled normally;
- a confirmed action is kept until the window ends or the sender writes again, so a
  repeated confirmation gets the same answer instead of "nothing to confirm".
"""

from __future__ import annotations

from datetime import timedelta

from bot.handlers.turn import CONFIRM_WINDOW_MINUTES, Turn
from models import pending as actions
from models.db import is_postgres
from models.tables.conversation import PendingAction


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
    row = await actions.locked(
        turn.session, channel=turn.inbound.channel, sender=turn.inbound.sender
    )
    turn.pending, turn.pending_read = row, False
    return row


async def put(turn: Turn, *, kind: str, data: dict) -> PendingAction:
    """Store `kind` for the sender, replacing any earlier pending action."""
    assert turn.member is not None
    await actions.put(
        turn.session,
        channel=turn.inbound.channel,
        sender=turn.inbound.sender,
        member_id=turn.member.id,
        kind=kind,
        data=data,
        now=turn.now,
        expires_at=turn.now + timedelta(minutes=CONFIRM_WINDOW_MINUTES),
    )
    turn.pending_created = True
    row = await _locked(turn)
    assert row is not None
    return row


async def clear(turn: Turn, row: PendingAction) -> None:
    await actions.delete(turn.session, row=row)
    if turn.pending is row:
        turn.pending = None


async def complete(turn: Turn, row: PendingAction) -> None:
    await actions.complete(turn.session, row=row, now=turn.now)
