"""The ledger write (`write_entry`): one change of a member's balance, with its entry and
its lots (DOMAIN.md §2, §4). `models.points` posts through it.

Three records move together, always in one transaction:

- ``points_ledger`` (`PointsEntry`), append-only; its unique ``key`` makes every
  change idempotent (a retried or duplicated request posts nothing);
- ``members.points``, the balance, never below zero except after a ``return`` or
  a negative ``adjustment`` took back points already spent (``NEGATIVE_ALLOWED``);
  nothing else can then spend until it is positive again;
- ``points_lots`` (`PointsLot`): what is left of each earning and when it
  expires. Earnings open a lot; spending takes from the lots that expire first
  (lots that never expire last); expiry closes one lot. What a return takes back
  beyond the open lots becomes a *debt lot* (``remaining`` below zero, no expiry);
  the next earnings pay the debt lots first. Positive lots and debt lots never
  coexist, so the invariant below holds with a negative balance too.

So ``members.points == sum(ledger deltas) == sum(open lots)`` (`models.points_reads.balance_check`).

Concurrency (PostgreSQL READ COMMITTED; SQLite serialises writers with
``BEGIN IMMEDIATE``). `write_entry` (through `models.points.post_points`):

1. returns None at once if the key is already in the ledger (cheap select);
2. moves the balance with one conditional statement,
   ``UPDATE members SET points = points + :d WHERE id = :id AND points + :d >= 0
   RETURNING points``. It takes the member's row lock, which is held to the end of
   the transaction, so every change to one member is serialised; a waiter
   re-checks the condition against the committed balance, so the balance can
   never go negative. The returned value is the true ``balance_after``;
3. inserts the ledger row with ``ON CONFLICT (key) DO NOTHING RETURNING id``. A
   twin request with the same key waited for the member lock in step 2, so the
   first one has committed by now and the insert returns nothing: the balance
   move is undone (the lock is still ours) and the call returns None. When step 2
   matched no row, the key is looked up again before `InsufficientPoints` is
   raised, so a twin gets None rather than an error;
4. opens or consumes lots, reading them only now, under the lock.

Lock order is always "member row first, then ledger key", so two postings can
only deadlock if they lock two members in opposite orders (a purchase that
credits a referrer); PostgreSQL then aborts one and the caller may retry.

Spending (a negative delta other than expiry) first expires the member's lots
that are past their date (`models.points.post_points`, before it calls
`write_entry`), so points past expiry are never spent even before the daily
`expire_due` job has run.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import case, literal
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import insert_ignore
from models.errors import InsufficientPoints, NotFound
from models.tables.ledger import PointsEntry, PointsLot
from models.tables.members import Member
from models.types import UTCDateTime

REASONS = frozenset(
    {
        "purchase",
        "birthday_bonus",
        "referral",
        "visit",
        "redemption",
        "expiry",
        "adjustment",
        "return",
        "voucher_void",
        "rebate",
    }
)
NEGATIVE_ALLOWED = frozenset({"return", "adjustment"})
"""Reasons whose negative delta may take the balance below zero (CONTRACT.md "Points and
returns": points taken back that were already spent leave a debt)."""

MEMBERS = Member.__table__
LEDGER = PointsEntry.__table__
LOTS = PointsLot.__table__


async def key_exists(session: AsyncSession, key: str) -> bool:
    found = await session.exec(select(LEDGER.c.id).where(LEDGER.c.key == key))
    return found.first() is not None


def sync_member(session: AsyncSession, member_id: int, **values) -> None:
    """Refresh a member already loaded in this session after a Core UPDATE (no query)."""
    member = session.identity_map.get(identity_key(Member, member_id))
    if member is not None:
        for name, value in values.items():
            set_committed_value(member, name, value)


def latest(column, at: datetime):
    """SQL for the later of a nullable timestamp column and `at`."""
    value = literal(at, UTCDateTime())
    return case((column.is_(None) | (column < value), value), else_=column)


async def _move_balance(
    session: AsyncSession, member_id: int, delta: int, at: datetime, below_zero: bool = False
) -> int | None:
    """Add `delta` unless the balance would go negative (unless `below_zero`); the new
    balance, or None."""
    where = [MEMBERS.c.id == member_id]
    if not below_zero:
        where.append(MEMBERS.c.points + delta >= 0)
    stmt = (
        MEMBERS.update()
        .where(*where)
        .values(points=MEMBERS.c.points + delta, updated_at=latest(MEMBERS.c.updated_at, at))
        .returning(MEMBERS.c.points)
    )
    return (await session.exec(stmt)).scalar_one_or_none()


async def lock_member(session: AsyncSession, member_id: int) -> int:
    """Take the member's row lock (PostgreSQL; SQLite already holds the write lock); the balance."""
    stmt = select(MEMBERS.c.points).where(MEMBERS.c.id == member_id).with_for_update()
    points = (await session.exec(stmt)).first()
    if points is None:
        raise NotFound("unknown member", "member")
    return points


async def _consume(session: AsyncSession, member_id: int, amount: int) -> int:
    """Take `amount` points from the member's open lots, earliest expiry first, never-expiring
    last (called under the member's lock); what the lots could not cover."""
    stmt = (
        select(LOTS.c.id, LOTS.c.remaining)
        .where(LOTS.c.member_id == member_id, LOTS.c.remaining > 0)
        .order_by(LOTS.c.expires_on.asc().nulls_last(), LOTS.c.id)
    )
    for lid, remaining in (await session.exec(stmt)).all():
        if amount <= 0:
            break
        take = min(amount, remaining)
        await session.exec(
            LOTS.update().where(LOTS.c.id == lid).values(remaining=LOTS.c.remaining - take)
        )
        amount -= take
    return amount


async def _pay_debt(session: AsyncSession, member_id: int, amount: int) -> int:
    """Pay the member's debt lots (negative ``remaining``) with `amount` earned points,
    oldest first; what is left to open a lot with."""
    stmt = (
        select(LOTS.c.id, LOTS.c.remaining)
        .where(LOTS.c.member_id == member_id, LOTS.c.remaining < 0)
        .order_by(LOTS.c.id)
    )
    for lid, remaining in (await session.exec(stmt)).all():
        if amount <= 0:
            break
        pay = min(amount, -remaining)
        await session.exec(
            LOTS.update().where(LOTS.c.id == lid).values(remaining=LOTS.c.remaining + pay)
        )
        amount -= pay
    return amount


async def write_entry(
    session: AsyncSession,
    *,
    member_id: int,
    delta: int,
    reason: str,
    key: str,
    at: datetime,
    local_date: date,
    expires_on: date | None,
    purchase_id: int | None = None,
    note: str = "",
    lot_id: int | None = None,
) -> PointsEntry | None:
    """Move the balance, insert the entry and open (`expires_on`: its last day) or consume
    lots; None if a twin posted `key` first. The caller has expired what was due.

    `lot_id`: this is the expiry of that lot; the caller closes it (no FIFO spending).
    """
    if reason not in REASONS:
        raise ValueError(f"unknown points reason {reason!r}")
    # An earning always goes through (it pays a debt first); a spend must be covered.
    below_zero = delta >= 0 or reason in NEGATIVE_ALLOWED
    balance = await _move_balance(session, member_id, delta, at, below_zero)
    if balance is None:
        if await key_exists(session, key):
            return None  # a concurrent twin posted it first
        current = await lock_member(session, member_id)
        raise InsufficientPoints(current, -delta)
    values = dict(
        member_id=member_id,
        delta=delta,
        reason=reason,
        at=at,
        local_date=local_date,
        key=key,
        balance_after=balance,
        purchase_id=purchase_id,
        note=note[:200],
    )
    stmt = (
        insert_ignore(session.bind.dialect.name, LEDGER)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(LEDGER.c.id)
    )
    entry_id = (await session.exec(stmt, params=values)).scalar_one_or_none()
    if entry_id is None:
        # A twin committed this key while we waited for the member lock: undo our move.
        await _move_balance(session, member_id, -delta, at, True)
        return None
    lot = dict(member_id=member_id, entry_id=entry_id, earned_on=local_date)
    if delta > 0:
        # A balance below zero before this entry means a debt lot: pay it first.
        left = await _pay_debt(session, member_id, delta) if balance - delta < 0 else delta
        if left > 0:
            lot.update(expires_on=expires_on, points=left, remaining=left)
            await session.exec(LOTS.insert(), params=lot)
    elif delta < 0 and lot_id is None:
        short = await _consume(session, member_id, -delta)
        if short > 0:  # only for NEGATIVE_ALLOWED reasons: the debt is a lot below zero
            lot.update(expires_on=None, points=-short, remaining=-short)
            await session.exec(LOTS.insert(), params=lot)
    sync_member(session, member_id, points=balance)
    return PointsEntry(id=entry_id, **values)
