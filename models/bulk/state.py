"""What a bulk batch reads before it replays its records: members with the history the
tier rules measure, their open assignments and card applications, stores and assistants
(one query each), and the ids its new rows take (`Ids`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Integer, any_, cast, literal, null, or_, select, text, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel.ext.asyncio.session import AsyncSession

from models.cards import ACTIVE
from models.db import is_postgres
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
class MemberState:  # its first fields are MEMBER_COLUMNS, in order (checked below)
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


if tuple(MemberState.__dataclass_fields__)[: len(MEMBER_COLUMNS)] != MEMBER_COLUMNS:
    raise TypeError("MemberState must begin with MEMBER_COLUMNS, in order")


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


def among(column, values: Iterable[Any], pg: bool):
    """`column IN values`; on PostgreSQL `column = ANY($1)` with the values as one array
    parameter (one cached statement whatever their number, instead of a statement with a
    parameter per value rendered at each execution)."""
    values = list(values)
    if pg:
        return column == any_(literal(values, ARRAY(column.type)))
    return column.in_(values)


async def existing(session: AsyncSession, column, values: set[str]) -> set[str]:
    """Those of `values` found in `column` (one query)."""
    if not values:
        return set()
    found = select(column).where(among(column, values, is_postgres(session)))
    return set((await session.exec(found)).scalars())


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
    phones, cards, pg = list(phones), list(cards), is_postgres(session)
    where = [among(MEMBERS.c.phone, phones, pg)] if phones else []
    if cards:
        where.append(among(MEMBERS.c.card_no, cards, pg))
    if not where:
        return []
    members = await _members(session, or_(*where), applications=applications, lock=lock)
    if not members:
        return []
    ids = list(members)
    p = Purchase.__table__.c
    sold = select(p.member_id, p.local_date, p.points, p.amount).where(among(p.member_id, ids, pg))
    r = SaleReturn.__table__.c
    back = select(r.member_id, r.sale_date, r.points, r.amount).where(among(r.member_id, ids, pg))
    if since is not None:
        sold, back = sold.where(p.local_date >= since), back.where(r.sale_date >= since)
    for member_id, day, points, amount in (await session.exec(sold)).all():
        members[member_id].sales.append((day, points, amount))
    for member_id, day, points, amount in (await session.exec(back)).all():
        members[member_id].returns.append((day, points, amount))
    return list(members.values())


async def _members(
    session: AsyncSession, where, *, applications: bool, lock: bool
) -> dict[int, MemberState]:
    """The members `where` selects by id, with their open assignments and (with
    `applications`) card applications under way; `lock`: their row locks, in id order."""
    stmt = select(*(MEMBERS.c[n] for n in MEMBER_COLUMNS)).where(where)
    if lock:
        stmt = stmt.order_by(MEMBERS.c.id).with_for_update()
    rows = (await session.exec(stmt)).all()
    members = {r[0]: MemberState(*r) for r in rows}  # the fields begin with MEMBER_COLUMNS
    if not members:
        return members
    ids, pg = list(members), is_postgres(session)
    # By member only, the rest checked here: with a second condition in the statement
    # (ended_on IS NULL, status IN …) a planner without statistics may scan that
    # condition's index instead, which holds most of the table.
    a = Assignment.__table__
    open_ = select(a).where(among(a.c.member_id, ids, pg)).order_by(a.c.id)
    for values in await _dicts(session, open_):
        if values["ended_on"] is None:
            members[values["member_id"]].assignments.append(Row(values))
    if applications:
        c = CardApplication.__table__
        apps = select(c).where(among(c.c.member_id, ids, pg)).order_by(c.c.id)
        for values in await _dicts(session, apps):
            if values["status"] in ACTIVE:
                members[values["member_id"]].applications.append(Row(values))
    return members


async def verify_carried(
    session: AsyncSession,
    carried: list[MemberState],
    expected: dict[int, tuple],
    *,
    applications: bool,
) -> bool:
    """Lock the rows of `carried` (members a batch replayed from the previous batch's
    state, `models.bulk.pipeline`) and check that the database holds what that batch left
    (`expected`, by member id): False if another writer changed one of them meanwhile."""
    stored = await _members(
        session,
        among(MEMBERS.c.id, [m.id for m in carried], True),
        applications=applications,
        lock=True,
    )
    return all(
        (s := stored.get(m.id)) is not None and expected_state(s) == expected[m.id] for m in carried
    )


def expected_state(m: MemberState) -> tuple:
    """What `verify_carried` compares: the member row, open assignments, card
    applications under way."""
    return (
        tuple(getattr(m, n) for n in MEMBER_COLUMNS),
        tuple((a.id, a.established) for a in m.assignments),
        tuple((a.id, a.status) for a in m.applications),
    )


async def shops(session: AsyncSession) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stores by code and assistants by code (and by id), the columns the rules read (one
    query for both: a batch's reads are round trips to a server busy with the batch
    before)."""
    s, a = Store.__table__.c, Assistant.__table__.c
    both = union_all(
        select(
            literal("store").label("kind"),
            s.id,
            s.code,
            cast(null(), Integer).label("store_id"),
            cast(null(), Boolean).label("active"),
        ),
        select(literal("assistant"), a.id, a.code, a.store_id, a.active),
    )
    stores: dict[str, Any] = {}
    assistants: dict[Any, Any] = {}
    for r in (await session.exec(both)).all():  # type: ignore[call-overload]
        if r.kind == "store":
            stores[r.code] = r
        else:
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
                "SELECT array_agg(nextval(pg_get_serial_sequence(:t, 'id')))"
                " FROM generate_series(1, :n)"
            )
            drawn = (await self.session.exec(stmt, params={"t": table, "n": self.block})).one()[0]
            free = self._free[table] = sorted(drawn, reverse=True)
        return free.pop()
