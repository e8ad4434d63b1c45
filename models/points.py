"""The points ledger: every change of a member's balance (DOMAIN.md §2, §4).

Three records move together, always in one transaction (`models.ledger`, which also
describes the concurrency design): the append-only ledger, the balance and the lots.
This module posts changes (`post_points`, which first expires what is past its last
day before a spend), dates the lots (`expiry_date`) and expires them (`expire_due`);
`models.points_reads` holds the reads (next expiry, lapsed points, `balance_check`).
"""

from __future__ import annotations

from calendar import monthrange
from datetime import date, datetime, timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import add_months
from models.ledger import LOTS, key_exists, lock_member, write_entry
from models.rules import ExpiryRules, PointsRules
from models.tables.ledger import PointsEntry


def expiry_date(rules: ExpiryRules, earned_on: date) -> date | None:
    """The last day on which points earned on `earned_on` can be spent (None = never expire).

    - ``never``: None.
    - ``calendar_year``: 31 December of the year earned (DOMAIN.md §2, 004).
    - ``period``: the last day of the annual period (from ``period_start``) the day
      falls in: with 08-01, 2026-09-01 → 2027-07-31 and 2026-07-31 → 2026-07-31.
    - ``months``: valid for ``months`` calendar months: the day before the same
      day ``months`` later (2026-03-15, 12 months → 2027-03-14).
    """
    if rules.policy == "never":
        return None
    if rules.policy == "calendar_year":
        return date(earned_on.year, 12, 31)
    if rules.policy == "months":
        return add_months(earned_on, rules.months) - timedelta(days=1)
    month, day = (int(p) for p in rules.period_start.split("-"))
    start = _on(earned_on.year, month, day)
    if earned_on < start:
        return start - timedelta(days=1)
    return _on(earned_on.year + 1, month, day) - timedelta(days=1)


def _on(year: int, month: int, day: int) -> date:
    """`month`-`day` of `year`; a day past the month's end (02-29) falls on its last day."""
    return date(year, month, min(day, monthrange(year, month)[1]))


async def post_points(
    session: AsyncSession,
    *,
    rules: PointsRules,
    member_id: int,
    delta: int,
    reason: str,
    key: str,
    at: datetime,
    local_date: date,
    purchase_id: int | None = None,
    note: str = "",
    check_key: bool = True,
) -> PointsEntry | None:
    """Change a member's balance by `delta` and record why; None if `key` was already posted.

    Raises `InsufficientPoints` when the balance does not cover a negative delta
    (nothing is changed then) and `NotFound` for an unknown member. See the module
    docstring for the concurrency design. `check_key=False` skips the cheap
    pre-check when the caller knows the key is new (derived from a row it has just
    inserted); the ``ON CONFLICT`` guard still applies.
    """
    if check_key and await key_exists(session, key):
        return None
    if delta < 0 and reason != "expiry":
        await _expire_member(session, rules=rules, member_id=member_id, today=local_date, now=at)
    return await write_entry(
        session,
        member_id=member_id,
        delta=delta,
        reason=reason,
        key=key,
        at=at,
        local_date=local_date,
        purchase_id=purchase_id,
        note=note,
        expires_on=expiry_date(rules.expiry, local_date),
    )


async def _expire_lot(
    session: AsyncSession,
    *,
    rules: PointsRules,
    member_id: int,
    lot_id: int,
    today: date,
    now: datetime,
) -> int:
    """Post the expiry of one lot (key ``expiry:<lot id>``); the points it removed."""
    balance = await lock_member(session, member_id)
    # Read the lot only under the lock: a spend or an expiry run that committed while
    # we waited may have used or closed it (then there is nothing left to do).
    row = (
        await session.exec(select(LOTS.c.remaining, LOTS.c.earned_on).where(LOTS.c.id == lot_id))
    ).first()
    if row is None or row[0] <= 0:
        return 0
    remaining, earned_on = row
    amount = min(remaining, balance)
    if amount > 0:
        entry = await write_entry(
            session,
            member_id=member_id,
            delta=-amount,
            reason="expiry",
            key=f"expiry:{lot_id}",
            at=now,
            local_date=today,
            note=f"lot {lot_id} earned {earned_on.isoformat()}",
            lot_id=lot_id,
            expires_on=None,
        )
        if entry is None:
            return 0
    # The lot is closed, including what a drifted balance could not cover.
    await session.exec(LOTS.update().where(LOTS.c.id == lot_id).values(remaining=0))
    return amount


async def _expire_member(
    session: AsyncSession, *, rules: PointsRules, member_id: int, today: date, now: datetime
) -> int:
    due = select(LOTS.c.id).where(
        LOTS.c.member_id == member_id, LOTS.c.remaining > 0, LOTS.c.expires_on < today
    )
    total = 0
    for lot_id in (await session.exec(due.order_by(LOTS.c.id))).all():
        total += await _expire_lot(
            session, rules=rules, member_id=member_id, lot_id=lot_id, today=today, now=now
        )
    return total


async def expire_due(
    session: AsyncSession, *, rules: PointsRules, today: date, now: datetime
) -> int:
    """Expire every lot whose last day is before `today`; the number of points expired.

    One ``expiry`` entry per lot (key ``expiry:<lot id>``), so a rerun, or a run
    beside a concurrent spend, changes nothing twice. Only due lots are read, via
    the partial index ``ix_points_lots_due`` (open lots by expiry date). Lots are
    taken in member order so concurrent runs lock members in the same order.
    """
    due = (
        select(LOTS.c.id, LOTS.c.member_id)
        .where(LOTS.c.remaining > 0, LOTS.c.expires_on < today)
        .order_by(LOTS.c.member_id, LOTS.c.id)
    )
    total = 0
    for lot_id, member_id in (await session.exec(due)).all():
        total += await _expire_lot(
            session, rules=rules, member_id=member_id, lot_id=lot_id, today=today, now=now
        )
    return total
