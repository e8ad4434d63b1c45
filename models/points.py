"""The points ledger: every change of a member's balance (DOMAIN.md §2, §4).

Three records move together, always in one transaction:

- ``points_ledger`` (`PointsEntry`), append-only; its unique ``key`` makes every
  change idempotent (a retried or duplicated request posts nothing);
- ``members.points``, the balance, never below zero;
- ``points_lots`` (`PointsLot`): what is left of each earning and when it
  expires. Earnings open a lot; spending takes from the lots that expire first
  (lots that never expire last); expiry closes one lot.

So ``members.points == sum(ledger deltas) == sum(open lots)`` (`balance_check`).

Concurrency (PostgreSQL READ COMMITTED; SQLite serialises writers with
``BEGIN IMMEDIATE``). `post_points`:

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
that are past their date, so points past expiry are never spent even before the
daily `expire_due` job has run.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import date, datetime, timedelta

from sqlalchemy import Date, Text, bindparam, case, cast, func, literal, literal_column
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.expression import ColumnElement, ScalarSelect
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import add_months
from models.db import insert_ignore
from models.errors import InsufficientPoints, NotFound
from models.rules import ExpiryRules, PointsRules
from models.tables.ledger import PointsEntry, PointsLot
from models.tables.members import Member
from models.types import UTCDateTime

REASONS = frozenset(
    {"purchase", "birthday_bonus", "referral", "visit", "redemption", "expiry", "adjustment"}
)

MEMBERS = Member.__table__
LEDGER = PointsEntry.__table__
LOTS = PointsLot.__table__


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


async def _key_exists(session: AsyncSession, key: str) -> bool:
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
    session: AsyncSession, member_id: int, delta: int, at: datetime
) -> int | None:
    """Add `delta` unless the balance would go negative; the new balance, or None."""
    stmt = (
        MEMBERS.update()
        .where(MEMBERS.c.id == member_id, MEMBERS.c.points + delta >= 0)
        .values(points=MEMBERS.c.points + delta, updated_at=latest(MEMBERS.c.updated_at, at))
        .returning(MEMBERS.c.points)
    )
    return (await session.exec(stmt)).scalar_one_or_none()


async def _lock_member(session: AsyncSession, member_id: int) -> int:
    """Take the member's row lock (PostgreSQL; SQLite already holds the write lock); the balance."""
    stmt = select(MEMBERS.c.points).where(MEMBERS.c.id == member_id).with_for_update()
    points = (await session.exec(stmt)).first()
    if points is None:
        raise NotFound("unknown member", "member")
    return points


async def _consume(session: AsyncSession, member_id: int, amount: int) -> None:
    """Take `amount` points from the member's open lots, earliest expiry first, never-expiring
    last (called under the member's lock)."""
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
    if check_key and await _key_exists(session, key):
        return None
    return await _post(
        session,
        rules=rules,
        member_id=member_id,
        delta=delta,
        reason=reason,
        key=key,
        at=at,
        local_date=local_date,
        purchase_id=purchase_id,
        note=note,
    )


async def _post(
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
    lot_id: int | None = None,
) -> PointsEntry | None:
    """`post_points` without the key pre-check.

    `lot_id`: this is the expiry of that lot; the caller closes it (no FIFO spending).
    """
    if reason not in REASONS:
        raise ValueError(f"unknown points reason {reason!r}")
    if delta < 0 and reason != "expiry":
        await _expire_member(session, rules=rules, member_id=member_id, today=local_date, now=at)
    balance = await _move_balance(session, member_id, delta, at)
    if balance is None:
        if await _key_exists(session, key):
            return None  # a concurrent twin posted it first
        current = await _lock_member(session, member_id)
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
        await _move_balance(session, member_id, -delta, at)
        return None
    if delta > 0:
        lot = dict(
            member_id=member_id,
            entry_id=entry_id,
            earned_on=local_date,
            expires_on=expiry_date(rules.expiry, local_date),
            points=delta,
            remaining=delta,
        )
        await session.exec(LOTS.insert(), params=lot)
    elif delta < 0 and lot_id is None:
        await _consume(session, member_id, -delta)
    sync_member(session, member_id, points=balance)
    return PointsEntry(id=entry_id, **values)


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
    balance = await _lock_member(session, member_id)
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
        entry = await _post(
            session,
            rules=rules,
            member_id=member_id,
            delta=-amount,
            reason="expiry",
            key=f"expiry:{lot_id}",
            at=now,
            local_date=today,
            note=f"lot {lot_id} earned {earned_on.isoformat()}",
            lot_id=lot_id,
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


_SPACE = literal_column("' '", Text)
_ZERO = literal_column("0")


def lapsed_points(member_id: ColumnElement, today: ColumnElement) -> ScalarSelect:
    """Points of the member's lots past their last day that the daily job has not expired
    yet: no longer the member's, though still in `members.points` until it runs. A scalar
    subquery (correlated when `member_id` is a column of the enclosing statement)."""
    lots = LOTS.alias("l")
    return (
        select(func.coalesce(func.sum(lots.c.remaining), _ZERO))
        .where(lots.c.member_id == member_id, lots.c.remaining > _ZERO, lots.c.expires_on < today)
        .scalar_subquery()
    )


def next_expiry(member_id: ColumnElement, today: ColumnElement) -> ScalarSelect:
    """The member's next expiry as the text "day points" (the first day from `today` on
    with open lots, and their sum), or NULL: one column, so the read of the chat bot's
    "积分" (`models.tiers.facts`) carries it next to the rest; `read_expiry` parses it."""
    lots = LOTS.alias("l")
    return (
        select(
            cast(lots.c.expires_on, Text) + _SPACE + cast(func.sum(lots.c.remaining), Text)
        )
        .where(lots.c.member_id == member_id, lots.c.remaining > _ZERO, lots.c.expires_on >= today)
        .group_by(lots.c.expires_on)
        .order_by(lots.c.expires_on)
        .limit(literal_column("1"))
        .offset(_ZERO)  # SQLite would add "OFFSET ?" otherwise
        .scalar_subquery()
    )


def read_expiry(text: str | None) -> tuple[int, date] | None:
    """(points, day) from the text of `next_expiry`; None when nothing expires."""
    if text is None:
        return None
    day, points = text.split(" ")
    return int(points), date.fromisoformat(day)


_NEXT_EXPIRY = select(
    next_expiry(bindparam("member_id"), bindparam("today", type_=Date))
)


async def expiring_soon(
    session: AsyncSession, *, member_id: int, today: date
) -> tuple[int, date] | None:
    """(points, day) of the member's next expiry on or after `today`; None if nothing expires."""
    params = {"member_id": member_id, "today": today}
    return read_expiry((await session.exec(_NEXT_EXPIRY, params=params)).one())


async def balance_check(session: AsyncSession, *, member_id: int) -> tuple[int, int, int]:
    """(members.points, sum of ledger deltas, sum of open lots) — equal when nothing drifted."""
    points = (await session.exec(select(MEMBERS.c.points).where(MEMBERS.c.id == member_id))).first()
    if points is None:
        raise NotFound("unknown member", "member")
    ledger_sum = select(func.coalesce(func.sum(LEDGER.c.delta), 0)).where(
        LEDGER.c.member_id == member_id
    )
    lots_sum = select(func.coalesce(func.sum(LOTS.c.remaining), 0)).where(
        LOTS.c.member_id == member_id
    )
    ledger = (await session.exec(ledger_sum)).one()
    lots = (await session.exec(lots_sum)).one()
    return int(points), int(ledger), int(lots)
