"""What a bulk batch reads before it replays its records: members with the history the
tier rules measure, their open assignments and card applications, stores and assistants
(one query each), and the ids its new rows take (`Ids`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.cards import ACTIVE
from models.rules import TierRules
from models.tables.cards import CardApplication
from models.tables.members import Assignment, Assistant, Member, Store
from models.tables.purchases import Purchase
from models.tables.till import SaleReturn
from models.tiers.windows import window_span

MEMBERS = Member.__table__

MEMBER_COLUMNS = (
    "id",
    "phone",
    "card_no",
    "tier",
    "tier_since",
    "tier_expires",
    "eligible_tier",
    "eligible_since",
    "birthday_month",
    "birthday_day",
    "birthday_calendar",
    "birthday_leap_month",
    "points",
    "cumulative_spend",
    "purchases_count",
    "first_purchase_at",
    "last_purchase_at",
    "updated_at",
    "assistant_id",
    "referrer_id",
)
"""The member columns a purchase reads or changes (the bulk update writes them back)."""


@dataclass
class Row:
    """A row of another table as the replay changes it: its values, and whether it is
    new in this batch (inserted) or stored before (updated when `changed`)."""

    values: dict[str, Any]
    new: bool = False
    changed: bool = False

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def set(self, **values: Any) -> None:
        self.values.update(values)
        self.changed = True


@dataclass(eq=False)
class MemberState:
    """One member during a replay: the `MEMBER_COLUMNS` as attributes (the rule functions
    read them as they read a `Member`), plus what the tier and ownership rules read."""

    id: int
    phone: str
    card_no: str | None = None
    tier: str = ""
    tier_since: date | None = None
    tier_expires: date | None = None
    eligible_tier: str | None = None
    eligible_since: date | None = None
    birthday_month: int | None = None
    birthday_day: int | None = None
    birthday_calendar: str = "solar"
    birthday_leap_month: bool = False
    points: int = 0
    cumulative_spend: Decimal = Decimal("0.00")
    purchases_count: int = 0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    updated_at: datetime | None = None
    assistant_id: int | None = None
    referrer_id: int | None = None
    new: dict[str, Any] | None = None
    """A member enrolled in this batch: the other columns of the row to insert."""
    changed: bool = False
    sales: list[tuple[date, int, Decimal]] = field(default_factory=list)
    """(local_date, points, amount) of the member's purchases the tier windows may read."""
    returns: list[tuple[date, int, Decimal]] = field(default_factory=list)
    """(sale_date, points, amount) of the returns of those purchases."""
    assignments: list[Row] = field(default_factory=list)
    """Open assignments, by id."""
    applications: list[Row] = field(default_factory=list)
    """Card applications under way (`models.cards.ACTIVE`), by id."""

    def row(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in MEMBER_COLUMNS}
        return values | self.new if self.new is not None else values


def member_defaults(now: datetime) -> dict[str, Any]:
    """Every column of a new member row (but the id) as `Member` fills it by default,
    stamped `now` (built from one `Member`: constructing one per row costs more than the
    rest of the row's work)."""
    template = Member(phone="", join_date=now.date(), created_at=now, updated_at=now)
    return {c.name: getattr(template, c.name) for c in MEMBERS.columns if c.name != "id"}


def history_start(tiers: TierRules, first_day: date) -> date | None:
    """The first day a reach rule's window can read for sales on or after `first_day`
    (None: the whole history, for ``cumulative`` windows)."""
    starts = [
        window_span(rule.window, first_day, period_start=tiers.period_start)[0]
        for level in tiers.levels
        for rule in level.reach
    ]
    if any(s is None for s in starts):
        return None
    return min(starts, default=first_day)


async def _dicts(session: AsyncSession, stmt) -> list[dict[str, Any]]:
    result = await session.exec(stmt)
    names = list(result.keys())
    return [dict(zip(names, row, strict=True)) for row in result.all()]


async def load_members(
    session: AsyncSession,
    *,
    phones: Iterable[str],
    cards: Iterable[str],
    since: date | None,
    applications: bool,
    lock: bool,
) -> list[MemberState]:
    """The stored members with these phones or card numbers, with their sales and returns
    since `since`, open assignments and (with `applications`) card applications under
    way. `lock`: take their row locks (PostgreSQL), as the one-by-one path does."""
    phones, cards = list(phones), list(cards)
    where = [MEMBERS.c.phone.in_(phones)] if phones else []
    if cards:
        where.append(MEMBERS.c.card_no.in_(cards))
    if not where:
        return []
    stmt = select(*(MEMBERS.c[n] for n in MEMBER_COLUMNS)).where(or_(*where))
    if lock:
        stmt = stmt.order_by(MEMBERS.c.id).with_for_update()
    rows = (await session.exec(stmt)).all()
    members = {r[0]: MemberState(**dict(zip(MEMBER_COLUMNS, r, strict=True))) for r in rows}
    if not members:
        return []
    ids = list(members)
    p = Purchase.__table__.c
    sold = select(p.member_id, p.local_date, p.points, p.amount).where(p.member_id.in_(ids))
    r = SaleReturn.__table__.c
    back = select(r.member_id, r.sale_date, r.points, r.amount).where(r.member_id.in_(ids))
    if since is not None:
        sold, back = sold.where(p.local_date >= since), back.where(r.sale_date >= since)
    for member_id, day, points, amount in (await session.exec(sold)).all():
        members[member_id].sales.append((day, points, amount))
    for member_id, day, points, amount in (await session.exec(back)).all():
        members[member_id].returns.append((day, points, amount))
    # By member only, the rest checked here: with a second condition in the statement
    # (ended_on IS NULL, status IN …) a planner without statistics may scan that
    # condition's index instead, which holds most of the table.
    a = Assignment.__table__
    for values in await _dicts(session, select(a).where(a.c.member_id.in_(ids)).order_by(a.c.id)):
        if values["ended_on"] is None:
            members[values["member_id"]].assignments.append(Row(values))
    if applications:
        c = CardApplication.__table__
        apps = select(c).where(c.c.member_id.in_(ids)).order_by(c.c.id)
        for values in await _dicts(session, apps):
            if values["status"] in ACTIVE:
                members[values["member_id"]].applications.append(Row(values))
    return list(members.values())


async def shops(session: AsyncSession) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stores by code and assistants by code (and by id), the columns the rules read."""
    s, a = Store.__table__.c, Assistant.__table__.c
    stores = {r.code: r for r in (await session.exec(select(s.id, s.code))).all()}
    assistants: dict[Any, Any] = {}
    for r in (await session.exec(select(a.id, a.code, a.store_id, a.active))).all():
        assistants[r.code] = assistants[r.id] = r
    return stores, assistants


class Ids:
    """The ids new rows of a batch take, handed out in order: PostgreSQL draws them from
    each table's sequence (a block per query); SQLite counts on from the largest id (the
    batch holds the database's write lock, so no other writer can take one)."""

    def __init__(self, session: AsyncSession, block: int):
        self.session, self.block = session, max(block, 16)
        self.pg = session.bind.dialect.name == "postgresql"
        self._free: dict[str, list[int]] = {}
        self._next: dict[str, int] = {}

    async def next(self, table: str) -> int:
        if not self.pg:
            if table not in self._next:
                stmt = text(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")
                self._next[table] = (await self.session.exec(stmt)).one()[0]
            self._next[table] += 1
            return self._next[table] - 1
        free = self._free.get(table)
        if not free:
            stmt = text(
                "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"
            )
            drawn = (await self.session.exec(stmt, params={"t": table, "n": self.block})).all()
            free = self._free[table] = sorted((r[0] for r in drawn), reverse=True)
        return free.pop()
