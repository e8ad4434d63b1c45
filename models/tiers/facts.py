"""The read behind a member's "积分": one statement, run two ways.

`member_facts` is the definition: the member's row (the balance less the lots already
past their last day — `models.points_reads.lapsed_points`), their purchases in the tier
windows, their next expiry (`models.points_reads.next_expiry`) and, when a level takes
effect on approval, the tiers of their open card applications — each correlated to
the member's id, so one statement reads them all.

- The session path (`bot.handlers.points.show`) runs `read_points`: that statement for
  one member, through the turn's `AsyncSession`.
- The quick path (`bot.quick`) runs `sender_read`: the same columns next to the
  sender's identity, pending confirmation and inbound-log lookup, for the openids of
  concurrent messages, compiled once for the raw driver (`models.rawdb.compiled`).

`answer_facts` turns the member's part of either row into what the answer shows, so
both paths give the same text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    table,
    text,
    type_coerce,
)
from sqlalchemy import column as sql_column
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlmodel.ext.asyncio.session import AsyncSession

from models.cards import OPEN
from models.points_reads import lapsed_points, next_expiry, read_expiry
from models.rules import Measure, TierRules
from models.tables.cards import CardApplication
from models.tables.conversation import PendingAction
from models.tables.inbound import InboundMessage
from models.tables.members import Identity, Member
from models.tables.purchases import Purchase
from models.tables.till import SaleReturn
from models.tiers.meter import measure_total
from models.tiers.progress import TierProgress, next_level, progress_from_sales, sales_start
from models.tiers.upgrade import needs_applications, pending_from
from models.types import from_cents

_M = Member.__table__.alias("m")
_P = Purchase.__table__.alias("p")
_C = CardApplication.__table__.alias("c")
_R = SaleReturn.__table__.alias("r")
_EMPTY = literal_column("''", Text)
_COMMA = literal_column("','", Text)
_TODAY = bindparam("today", type_=Date)
_START = bindparam("start", type_=Date)
_SPACE = literal_column("' '", Text)
_ZERO = literal_column("0")
_WECHAT = literal_column("'wechat'")


class _joined(FunctionElement):
    """The values joined by ",": `group_concat` on SQLite, `string_agg` on PostgreSQL
    (SQLAlchemy's `aggregate_strings` passes the separator as a parameter the raw
    driver's text would have to fill in)."""

    type = Text()
    inherit_cache = True


@compiles(_joined, "sqlite")
def _group_concat(element: _joined, compiler, **kw) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(_joined)
def _string_agg(element: _joined, compiler, **kw) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, ',')"


def _text(value: ColumnElement) -> ColumnElement:
    return cast(func.coalesce(value, _ZERO), Text)


def member_facts(applications: bool) -> tuple[ColumnElement, ...]:
    """The columns of the points answer, correlated to the member `m` (parameters `today`
    and `start`, the first day of purchases the tier windows need — `sales_start`).
    Texts where a column holds several values: the purchases "day points cents,…", the
    open applications' tiers "gold,…" (NULL unless `applications`)."""
    sale = (
        cast(_P.c.local_date, Text)
        + _SPACE
        + _text(_P.c.points)
        + _SPACE
        + _text(type_coerce(_P.c.amount, BigInteger()))
    )
    sold = (
        select(_joined(sale))
        .where(_P.c.member_id == _M.c.id, _P.c.local_date >= _START, _P.c.local_date <= _TODAY)
        .scalar_subquery()
    )
    # Returns count against the day of the sale they return (as in `models.tiers.meter`):
    # a negative "sale" on that day.
    back = (
        cast(_R.c.sale_date, Text)
        + _SPACE
        + _text(-_R.c.points)
        + _SPACE
        + _text(-type_coerce(_R.c.amount, BigInteger()))
    )
    returned = (
        select(_joined(back))
        .where(_R.c.member_id == _M.c.id, _R.c.sale_date >= _START, _R.c.sale_date <= _TODAY)
        .scalar_subquery()
    )
    sales = func.coalesce(sold, _EMPTY) + _COMMA + func.coalesce(returned, _EMPTY)
    if applications:
        opened = (
            select(_joined(_C.c.tier))
            .where(
                _C.c.member_id == _M.c.id,
                _C.c.status.in_([literal_column(f"'{status}'") for status in sorted(OPEN)]),
            )
            .scalar_subquery()
        )
    else:
        opened = literal_column("NULL")
    return (
        _M.c.name,
        _M.c.points - lapsed_points(_M.c.id, _TODAY),
        _M.c.tier,
        type_coerce(_M.c.cumulative_spend, BigInteger()),
        _M.c.locale,
        _M.c.birthday_month,
        _M.c.birthday_day,
        _M.c.birthday_calendar,
        type_coerce(_M.c.birthday_leap_month, Integer()),
        _M.c.eligible_tier,
        sales,
        next_expiry(_M.c.id, _TODAY),
        opened,
    )


FACT_COLUMNS = 13
"""How many columns `member_facts` gives."""

_BY_MEMBER = {
    flag: select(*member_facts(flag)).where(_M.c.id == bindparam("member_id"))
    for flag in (False, True)
}
"""`member_facts` of one member (built once for each `applications`)."""


class PointsFacts(NamedTuple):
    """The member's side of the answer. A named tuple: made for every uncached quick
    answer, and a tuple is made fastest."""

    name: str
    points: int
    """The balance without the lots already past their last day."""
    tier: str
    cumulative_spend: Decimal
    birthday_month: int | None
    birthday_day: int | None
    birthday_calendar: str
    birthday_leap_month: bool


@dataclass(frozen=True, slots=True)
class AnswerFacts:
    """What the points answer shows, as read (`answer_facts`)."""

    member: PointsFacts
    locale: str | None
    """The member's stored language."""
    progress: TierProgress | None
    expiring: tuple[int, date] | None


def _pending(tiers: TierRules, row: Sequence) -> str | None:
    applications = row[12].split(",") if row[12] else ()
    return pending_from(tiers, tier=row[2], eligible=row[9], applications=applications)


def answer_facts(
    tiers: TierRules,
    row: Sequence,
    today: date,
    totals: Mapping[Measure, Decimal] | None = None,
) -> AnswerFacts:
    """The facts from the `member_facts` columns of a row (`totals`: the member's sums
    since joining, for ``cumulative`` rules — `cumulative_needs`)."""
    name, balance, tier, spend, locale, b_month, b_day, b_calendar, b_leap, _, sold, expiry, _ = row
    sales = []
    for sale in filter(None, sold.split(",")) if sold else ():
        day, points, cents = sale.split(" ")
        sales.append((date.fromisoformat(day), int(points), int(cents)))
    progress = progress_from_sales(
        tiers,
        tier=tier,
        pending=_pending(tiers, row),
        sales=sales,
        today=today,
        totals=totals,
    )
    member = PointsFacts(
        name, balance, tier, from_cents(spend), b_month, b_day, b_calendar, bool(b_leap)
    )
    return AnswerFacts(member, locale, progress, read_expiry(expiry))


def cumulative_needs(tiers: TierRules, row: Sequence) -> set[Measure]:
    """The measures whose sum since joining the progress of this row needs (the
    ``cumulative`` rules of the member's next level)."""
    found = next_level(tiers, tier=row[2], pending=_pending(tiers, row))
    if found is None:
        return set()
    return {rule.measure for rule in found.reach if rule.window == "cumulative"}


def first_sales_day(tiers: TierRules, today: date) -> date:
    """The `start` parameter: `sales_start`, or tomorrow when no window needs purchases."""
    return sales_start(tiers, today) or today + timedelta(days=1)


async def read_points(
    session: AsyncSession, *, tiers: TierRules, member_id: int, today: date
) -> AnswerFacts:
    """The points answer's facts through the session: one statement, plus one sum per
    ``cumulative`` measure of the next level."""
    params = {"member_id": member_id, "today": today, "start": first_sales_day(tiers, today)}
    row = (await session.exec(_BY_MEMBER[needs_applications(tiers)], params=params)).one()
    totals = {
        measure: await measure_total(
            session, member_id=member_id, measure=measure, span=(None, None)
        )
        for measure in cumulative_needs(tiers, row)
    }
    return answer_facts(tiers, row, today, totals)


# --------------------------------------------------------------------------- the quick path

_I = Identity.__table__.alias("i")
_A = PendingAction.__table__.alias("a")
_D = InboundMessage.__table__.alias("d")
_W = table("w", sql_column("address"), sql_column("seen"))
"""SQLite: the (openid, key) pairs of a batch, given as `WITH w(address, seen) AS
(VALUES (?, ?), …)` before the statement (`sqlite_prefix`)."""
_SEEN_PG = text(
    "(SELECT array_agg(k) FROM unnest(CAST(:keys AS TEXT[])) AS k WHERE (SELECT true"
    " FROM inbound_messages d WHERE d.channel = 'wechat' AND d.dedupe_key = k LIMIT 1))"
).bindparams(bindparam("keys"))
"""PostgreSQL: the keys of the batch that the log has. Each key is looked up by both
index columns (a subplan per key): `dedupe_key = ANY(keys)` would let a plan made while
the log looked empty scan every message of the channel for each read, as the log grows
(`tests/test_quick_answers.py`)."""


def sender_read(dialect: str, applications: bool) -> Select:
    """The rows of the openids of concurrent messages, in one statement (per statement
    the driver's and the database's fixed costs outweigh the lookups themselves).

    One row per openid: the address, whether the identity is active, its
    `last_inbound_at`, the id of the member it is actively bound to (else NULL), how many
    confirmations the sender has pending, the `member_facts` (NULLs when unbound), and
    whether the inbound log already has the message (`bot.inbound_log`'s de-duplication
    key: a retry, or a message another request is handling). On SQLite a row per (openid,
    key) of `w`, the count of the key in the log then the key; on PostgreSQL (parameters
    `keys` and `openids`, arrays) a row per openid, then the keys of the batch the log
    has."""
    pending = (
        select(func.count())
        .select_from(_A)
        .where(_A.c.channel == _WECHAT, _A.c.sender == _I.c.address)
        .scalar_subquery()
    )
    joined = _I.outerjoin(_M, and_(_M.c.id == _I.c.member_id, _I.c.active))
    head = (_I.c.address, _I.c.active, _I.c.last_inbound_at, _M.c.id, pending)
    facts = member_facts(applications)
    if dialect == "sqlite":
        seen = (
            select(func.count())
            .select_from(_D)
            .where(_D.c.channel == _WECHAT, _D.c.dedupe_key == _W.c.seen)
            .scalar_subquery()
        )
        return (
            select(*head, *facts, seen, _W.c.seen)
            .select_from(_W, joined)
            .where(_I.c.channel == _WECHAT, _I.c.address == _W.c.address)
        )
    openids = cast(bindparam("openids"), ARRAY(Text))
    return (
        select(*head, *facts, _SEEN_PG)
        .select_from(joined)
        .where(_I.c.channel == _WECHAT, _I.c.address == func.any(openids))
    )


def sqlite_prefix(pairs: int) -> str:
    """`WITH w(address, seen) AS (VALUES (?, ?), …)` for `pairs` pairs (SQLite)."""
    return f"WITH w(address, seen) AS (VALUES {', '.join(['(?, ?)'] * pairs)})"
