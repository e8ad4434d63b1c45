"""Purchases and the points they earn; visits and staff corrections (DOMAIN.md §2).

A purchase earns ``floor(amount × rate × item multiplier × day multiplier)`` points:

- ``rate``: points per yuan (default 1, 000 "每消費1元積1分").
- item multiplier: for each item ``multipliers[brand]``, else
  ``multipliers[category]``, else 1, capped at ``max_multiplier`` (004: never above
  the contract rate), averaged weighted by the items' amounts; 1 without items.
- day multiplier: the larger of the member's tier birthday multiplier, when the
  sale's brand day is the member's birthday (solar or lunar, `models.calendar`;
  default gold and diamond ×2, 000), and ``double_points_multiplier`` on a
  double-points day (``YYYY-MM-DD`` once, ``MM-DD`` every year; 000 §21).

Ledger entries of a purchase (keys make a re-sent receipt harmless):

- ``purchase:<id>`` reason ``purchase``: the base points (amount × rate × item
  multiplier). On a double-points day (when that is the larger day multiplier)
  the doubled total is posted here in one entry, with the note
  ``double_points_day x<multiplier>``.
- ``birthday:<id>`` reason ``birthday_bonus``: the extra points of the birthday
  multiplier (a tie with a double-points day counts as the birthday).
- ``referral:<id>`` reason ``referral``, to the referrer: ``floor(amount ×
  referral_share)`` (default 30 %) of the new member's first purchase (000).

Entries of zero points are not posted. `Purchase.points` is the member's total
(base + bonus), not the referrer's share. The first purchase is the member's first
*recorded* one (``purchases_count`` becomes 1); the referrer must be another,
existing member (else no referral, and no error); ``members.referrer_id`` is set
only if still empty.

In the same transaction the member's totals change: ``cumulative_spend``,
``purchases_count``, ``first_purchase_at`` / ``last_purchase_at`` (min / max, as
imports may arrive out of order) and ``updated_at`` (the latest event time seen;
domain code reads no clock).

The same ``receipt_no`` twice — in sequence or at the same instant — records one
purchase: the insert is ``ON CONFLICT (receipt_no) DO NOTHING`` and the loser
returns the winner's row with no other effect. (A first-time phone sent with a
receipt number that another request is recording at that very instant may leave
that new member enrolled; nothing else.)
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import case, literal
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import ownership
from models.calendar import is_birthday
from models.clock import local_date as brand_date
from models.db import insert_ignore
from models.errors import Conflict, InvalidInput
from models.phone import normalise_phone
from models.points import MEMBERS, latest, post_points, sync_member
from models.rules import LoyaltyRules, PointsRules
from models.strict import ascii_int, plain_decimal
from models.tables import Assistant, Member, PointsEntry, Purchase, PurchaseItem, Store
from models.tiers.upgrade import evaluate_after_purchase
from models.types import CENT, UTCDateTime


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT)


MAX_YUAN = Decimal("100000000")
"""Largest amount accepted for one purchase or item (100 million yuan): anything
larger is a typo or an attack, and must be refused before it reaches the database."""
MAX_QTY = 100_000


def _iso_datetime(value: Any) -> Any:
    """Accept a datetime or an ISO 8601 string only (no epoch numbers), years 2000-2100."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("expected an ISO 8601 date and time") from None
    if not isinstance(value, datetime):
        raise ValueError("expected an ISO 8601 date and time")
    if not 2000 <= value.year <= 2100:
        raise ValueError("date out of range (years 2000-2100)")
    return value


def _no_bool(value: Any) -> Any:
    """A count: a number, or a string of the digits 0-9 (never `1_000`, `１０`, true)."""
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, str):
        number = ascii_int(value.strip(), max_digits=9)
        if number is None:
            raise ValueError("expected a whole number written with the digits 0-9")
        return number
    return value


Yuan = Annotated[
    Decimal,
    BeforeValidator(plain_decimal),
    Field(ge=0, le=MAX_YUAN, decimal_places=2, allow_inf_nan=False),
    AfterValidator(_cents),
]
PositiveYuan = Annotated[
    Decimal,
    BeforeValidator(plain_decimal),
    Field(gt=0, le=MAX_YUAN, decimal_places=2, allow_inf_nan=False),
    AfterValidator(_cents),
]


class ItemIn(BaseModel):
    """One line of a receipt."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: Annotated[str, Field(max_length=64)]
    name: Annotated[str, Field(max_length=200)]
    category: Annotated[str, Field(max_length=64)]
    brand: Annotated[str, Field(max_length=64)] = ""
    qty: Annotated[int, Field(ge=1, le=MAX_QTY), BeforeValidator(_no_bool)] = 1
    amount: Yuan


def _phone(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return normalise_phone(value, field)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


class PurchaseIn(BaseModel):
    """A purchase as the operator API and the CSV import receive it (CONTRACT.md).

    `at` keeps what was given: a value without an offset is brand-local time and is
    made aware by `record_purchase`, which knows the brand's time zone.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    receipt_no: Annotated[str, Field(min_length=1, max_length=64)]
    card_no: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    phone: str | None = Field(default=None, validate_default=True)
    store: Annotated[str, Field(min_length=1, max_length=64)]
    assistant: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    amount: PositiveYuan
    at: Annotated[datetime, BeforeValidator(_iso_datetime)]
    items: list[ItemIn] = Field(default_factory=list)
    referrer: str | None = None

    @field_validator("phone")
    @classmethod
    def _phone_or_card(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or v == "":
            if not info.data.get("card_no"):
                raise ValueError("phone or card_no is required")
            return None
        return _phone(v, "phone")

    @field_validator("referrer")
    @classmethod
    def _referrer(cls, v: str | None) -> str | None:
        return _phone(v, "referrer") if v else None


def _item_multiplier(rules: PointsRules, item: ItemIn) -> Decimal:
    if item.brand and item.brand in rules.multipliers:
        m = rules.multipliers[item.brand]
    elif item.category in rules.multipliers:
        m = rules.multipliers[item.category]
    else:
        m = Decimal(1)
    return min(m, rules.max_multiplier)


def items_multiplier(rules: PointsRules, items: list[ItemIn]) -> Fraction:
    """Brand/category multipliers averaged weighted by item amounts (1 without items).

    An exact fraction, so that 1.5 × 2 is 3 and never 2.999….
    """
    total = sum((i.amount for i in items), Decimal(0))
    if not items or total == 0:
        return Fraction(1)
    weighted = sum((i.amount * _item_multiplier(rules, i) for i in items), Decimal(0))
    return Fraction(weighted) / Fraction(total)


def is_double_points_day(rules: PointsRules, day: date) -> bool:
    days = rules.double_points_days
    return day.isoformat() in days or day.strftime("%m-%d") in days


def member_birthday_on(member: Member, day: date) -> bool:
    if not (member.birthday_month and member.birthday_day):
        return False
    return is_birthday(
        day,
        month=member.birthday_month,
        day=member.birthday_day,
        calendar=member.birthday_calendar or "solar",
        leap_month=member.birthday_leap_month,
    )


def purchase_points(
    rules: PointsRules, *, member: Member, amount: Decimal, items: list[ItemIn], day: date
) -> tuple[int, int, str]:
    """(base points, bonus points, bonus kind) for one purchase — see the module docstring.

    Bonus kind: "birthday" (bonus posted as ``birthday_bonus``), "double_points_day"
    (bonus folded into the purchase entry) or "" (no day multiplier).
    """
    earned = Fraction(amount) * Fraction(rules.rate) * items_multiplier(rules, items)
    base = math.floor(earned)
    birthday = (
        rules.birthday_multiplier.get(member.tier, Decimal(1))
        if member_birthday_on(member, day)
        else Decimal(1)
    )
    double = rules.double_points_multiplier if is_double_points_day(rules, day) else Decimal(1)
    multiplier = max(birthday, double)
    if multiplier <= 1:
        return base, 0, ""
    bonus = math.floor(earned * Fraction(multiplier)) - base
    return base, bonus, "birthday" if birthday >= double else "double_points_day"


def _attach(session: AsyncSession, obj):
    """Make a row just inserted with Core (all attributes set) a persistent ORM object."""
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def _earliest(column, at: datetime):
    """SQL for the earlier of a nullable timestamp column and `at`."""
    value = literal(at, UTCDateTime())
    return case((column.is_(None) | (column > value), value), else_=column)


async def _store_and_assistant(
    session: AsyncSession, *, store_code: str, assistant_code: str | None
) -> tuple[Store, Assistant | None]:
    """Both by code in one query. Any active or inactive assistant may serve in any
    store (staff float between stores)."""
    stmt = (
        select(Store, Assistant)
        .select_from(Store)
        .outerjoin(Assistant, Assistant.code == (assistant_code or ""))
        .where(Store.code == store_code)
    )
    found = (await session.exec(stmt)).first()
    if found is None:
        raise InvalidInput("unknown store", "store")
    store, assistant = found
    if assistant_code and assistant is None:
        raise InvalidInput("unknown assistant", "assistant")
    return store, assistant if assistant_code else None


async def _enrol(
    session: AsyncSession, *, rules: LoyaltyRules, phone: str, store: Store, day: date
) -> Member:
    """The member with this phone, enrolled now (entry tier, this store) if unknown."""
    found = (await session.exec(select(Member).where(Member.phone == phone))).first()
    if found is not None:
        return found
    new = Member(phone=phone, join_date=day, tier=rules.tiers.entry.code, store_id=store.id)
    values = {c.name: getattr(new, c.name) for c in MEMBERS.columns if c.name != "id"}
    stmt = (
        insert_ignore(session.bind.dialect.name, MEMBERS)
        .on_conflict_do_nothing(index_elements=["phone"])
        .returning(MEMBERS.c.id)
    )
    new.id = (await session.exec(stmt, params=values)).scalar_one_or_none()
    if new.id is not None:
        return _attach(session, new)
    # A concurrent request enrolled this phone first (and has committed by now).
    return (await session.exec(select(Member).where(Member.phone == phone))).one()


async def _resolve_member(
    session: AsyncSession, *, rules: LoyaltyRules, data: PurchaseIn, store: Store, day: date
) -> Member:
    if data.phone:
        return await _enrol(session, rules=rules, phone=data.phone, store=store, day=day)
    found = (await session.exec(select(Member).where(Member.card_no == data.card_no))).first()
    if found is None:
        raise InvalidInput("unknown card number", "card_no")
    return found


async def _check_same(
    session: AsyncSession, existing: Purchase, data: PurchaseIn, at: datetime
) -> None:
    """A receipt number sent again must describe the same sale (a retry); another
    amount, time or store under a recorded number is a `Conflict` naming the difference."""
    store = await session.get(Store, existing.store_id)
    differences = [
        f"{name} {was} (not {now})"
        for name, was, now in (
            ("amount", existing.amount, data.amount),
            ("at", existing.at.isoformat(), at.astimezone(existing.at.tzinfo).isoformat()),
            ("store", store.code if store else None, data.store),
        )
        if was != now
    ]
    if differences:
        field = "amount" if existing.amount != data.amount else "receipt_no"
        raise Conflict(
            f"receipt {data.receipt_no} is already recorded with " + ", ".join(differences), field
        )


async def record_purchase(
    session: AsyncSession, *, rules: LoyaltyRules, tz: ZoneInfo, data: PurchaseIn
) -> tuple[Purchase, bool]:
    """Record a purchase and everything it earns; (purchase, True if newly recorded).

    Unknown store → InvalidInput field "store"; unknown assistant → "assistant" (an
    assistant of another store may serve: staff float); unknown card → "card_no".
    A new phone is enrolled (join date = the sale's brand day, entry tier, the
    sale's store). A receipt already recorded returns (existing, False) and
    changes nothing when it is the same sale (amount, time, store); another amount,
    time or store under that number raises `Conflict` naming the difference.
    """
    existing = (
        await session.exec(select(Purchase).where(Purchase.receipt_no == data.receipt_no))
    ).first()
    at = data.at if data.at.tzinfo is not None else data.at.replace(tzinfo=tz)
    if existing is not None:
        await _check_same(session, existing, data, at)
        return existing, False
    day = brand_date(at, tz)
    store, assistant = await _store_and_assistant(
        session, store_code=data.store, assistant_code=data.assistant
    )
    member = await _resolve_member(session, rules=rules, data=data, store=store, day=day)
    base, bonus, bonus_kind = purchase_points(
        rules.points, member=member, amount=data.amount, items=data.items, day=day
    )
    purchase = Purchase(
        receipt_no=data.receipt_no,
        member_id=member.id,
        store_id=store.id,
        assistant_id=assistant.id if assistant else None,
        amount=data.amount,
        at=at,
        local_date=day,
        points=base + bonus,
    )
    table = Purchase.__table__
    values = {c.name: getattr(purchase, c.name) for c in table.columns if c.name != "id"}
    stmt = (
        insert_ignore(session.bind.dialect.name, table)
        .on_conflict_do_nothing(index_elements=["receipt_no"])
        .returning(table.c.id)
    )
    purchase_id = (await session.exec(stmt, params=values)).scalar_one_or_none()
    if purchase_id is None:  # a concurrent request recorded this receipt first
        winner = (
            await session.exec(select(Purchase).where(Purchase.receipt_no == data.receipt_no))
        ).one()
        await _check_same(session, winner, data, at)
        return winner, False
    purchase.id = purchase_id
    _attach(session, purchase)
    if data.items:
        await session.exec(
            PurchaseItem.__table__.insert(),
            params=[{**i.model_dump(), "purchase_id": purchase_id} for i in data.items],
        )
    first = await _add_to_totals(session, member=member, amount=data.amount, at=at)
    await _post_purchase_points(
        session, rules=rules.points, purchase=purchase, base=base, bonus=bonus, kind=bonus_kind
    )
    if first and data.referrer:
        await _credit_referrer(
            session,
            rules=rules.points,
            member=member,
            purchase=purchase,
            referrer_phone=data.referrer,
        )
    await evaluate_after_purchase(
        session, rules=rules, member=member, purchase=purchase, tz=tz
    )
    await ownership.on_purchase(session, rules=rules, member=member, purchase=purchase)
    return purchase, True


async def _add_to_totals(
    session: AsyncSession, *, member: Member, amount: Decimal, at: datetime
) -> bool:
    """Add a sale to the member's totals (this takes the member's row lock).

    True if it is the member's first recorded purchase. Sales may arrive out of
    order (imports), so first/last purchase are the min/max, not the newest.
    """
    c = MEMBERS.c
    stmt = (
        MEMBERS.update()
        .where(c.id == member.id)
        .values(
            cumulative_spend=c.cumulative_spend + amount,
            purchases_count=c.purchases_count + 1,
            first_purchase_at=_earliest(c.first_purchase_at, at),
            last_purchase_at=latest(c.last_purchase_at, at),
            updated_at=latest(c.updated_at, at),
        )
        .returning(
            c.cumulative_spend,
            c.purchases_count,
            c.first_purchase_at,
            c.last_purchase_at,
            c.updated_at,
        )
    )
    row = (await session.exec(stmt)).one()
    sync_member(session, member.id, **row._asdict())
    return row.purchases_count == 1


async def _post_purchase_points(
    session: AsyncSession,
    *,
    rules: PointsRules,
    purchase: Purchase,
    base: int,
    bonus: int,
    kind: str,
) -> None:
    common = dict(
        rules=rules,
        member_id=purchase.member_id,
        at=purchase.at,
        local_date=purchase.local_date,
        purchase_id=purchase.id,
        check_key=False,  # keys derive from the purchase row inserted just now
    )
    if kind == "double_points_day":
        note = f"double_points_day x{rules.double_points_multiplier.normalize():f}"
        base, bonus = base + bonus, 0
    else:
        note = ""
    if base > 0:
        await post_points(
            session,
            delta=base,
            reason="purchase",
            key=f"purchase:{purchase.id}",
            note=note,
            **common,
        )
    if bonus > 0:
        await post_points(
            session,
            delta=bonus,
            reason="birthday_bonus",
            key=f"birthday:{purchase.id}",
            note="birthday",
            **common,
        )


async def _credit_referrer(
    session: AsyncSession,
    *,
    rules: PointsRules,
    member: Member,
    purchase: Purchase,
    referrer_phone: str,
) -> None:
    """The referrer's share of a new member's first purchase (000: 30 %); never to oneself."""
    found = (await session.exec(select(Member).where(Member.phone == referrer_phone))).first()
    if found is None or found.id == member.id:
        return
    referrer = found
    points = math.floor(purchase.amount * rules.referral_share)
    purchase.referrer_id = referrer.id
    if member.referrer_id is None:
        member.referrer_id = referrer.id
    session.add(member)
    if points > 0:
        await post_points(
            session,
            rules=rules,
            member_id=referrer.id,
            delta=points,
            reason="referral",
            key=f"referral:{purchase.id}",
            at=purchase.at,
            local_date=purchase.local_date,
            purchase_id=purchase.id,
            note=f"first purchase of member {member.id}",
            check_key=False,
        )


async def record_visit(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    member_id: int,
    assistant_id: int | None,
    at: datetime,
) -> PointsEntry | None:
    """Visit points (000: 10 points for a visit after an assistant's invitation).

    At most once per member per brand day (key ``visit:<member>:<day>``); the
    member's visit count grows only when the visit is recorded. None if the day's
    visit was already recorded.
    """
    day = brand_date(at, tz)
    entry = await post_points(
        session,
        rules=rules.points,
        member_id=member_id,
        delta=rules.points.visit_points,
        reason="visit",
        key=f"visit:{member_id}:{day.isoformat()}",
        at=at,
        local_date=day,
        note=f"assistant {assistant_id}" if assistant_id else "",
    )
    if entry is not None:
        stmt = (
            MEMBERS.update()
            .where(MEMBERS.c.id == member_id)
            .values(visits=MEMBERS.c.visits + 1)
            .returning(MEMBERS.c.visits)
        )
        sync_member(session, member_id, visits=(await session.exec(stmt)).scalar_one())
    return entry


async def adjust_points(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    member_id: int,
    delta: int,
    key: str,
    at: datetime,
    note: str,
) -> PointsEntry | None:
    """A staff correction (reason ``adjustment``, key ``adjust:<key>``); None if already made.

    A negative correction cannot take the balance below zero (InsufficientPoints).
    """
    if delta == 0:
        raise InvalidInput("an adjustment needs a non-zero number of points", "delta")
    if not key:
        raise InvalidInput("an adjustment needs a key", "key")
    return await post_points(
        session,
        rules=rules.points,
        member_id=member_id,
        delta=delta,
        reason="adjustment",
        key=f"adjust:{key}",
        at=at,
        local_date=brand_date(at, tz),
        note=note,
    )
