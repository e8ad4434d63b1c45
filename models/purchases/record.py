"""Recording a purchase (`record_purchase`): the store, assistant and member it belongs
to (a new phone is enrolled), one row per receipt number (a retry returns the recorded
sale, another sale under that number is a `Conflict`), the member's totals and the
points posted; then the referral, the tier upgrade and ownership follow."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import case, literal
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import auto_vouchers, ownership
from models.clock import local_date as brand_date
from models.db import insert_ignore
from models.errors import Conflict, InvalidInput
from models.ledger import MEMBERS, latest, sync_member
from models.points import post_points
from models.purchases.earning import purchase_points
from models.purchases.input import PurchaseIn
from models.purchases.referral import credit_referrer
from models.rules import LoyaltyRules, PointsRules
from models.tables.members import Assistant, Member, Store
from models.tables.purchases import Purchase, PurchaseItem
from models.tiers.upgrade import evaluate_after_purchase
from models.types import UTCDateTime
from models.voucher_till import use_voucher


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


def enrolled(rules: LoyaltyRules, *, phone: str, store_id: int, day: date) -> dict:
    """The values of a buyer enrolled by a sale: joining on the sale's day, entry tier, the
    sale's store."""
    return dict(phone=phone, join_date=day, tier=rules.tiers.entry.code, store_id=store_id)


async def _enrol(
    session: AsyncSession, *, rules: LoyaltyRules, phone: str, store: Store, day: date
) -> Member:
    """The member with this phone, enrolled now (entry tier, this store) if unknown."""
    found = (await session.exec(select(Member).where(Member.phone == phone))).first()
    if found is not None:
        return found
    new = Member(**enrolled(rules, phone=phone, store_id=store.id, day=day))
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
    `data.vouchers` are used for this sale (`models.voucher_till.use_voucher`, the
    buyer's own vouchers only); one that cannot be used raises `Conflict` and the
    caller's transaction, rolled back, records nothing of the sale.
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
    for code in dict.fromkeys(data.vouchers):  # a code twice in one sale is used once
        await use_voucher(
            session,
            tz=tz,
            code=code,
            store_code=store.code,
            receipt_no=data.receipt_no,
            actor="sale",
            now=at,
            member_id=member.id,
        )
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
        await credit_referrer(
            session,
            rules=rules.points,
            member=member,
            purchase=purchase,
            referrer_phone=data.referrer,
        )
    await evaluate_after_purchase(session, rules=rules, member=member, purchase=purchase, tz=tz)
    await auto_vouchers.after_purchase(
        session, rules=rules, tz=tz, member=member, purchase=purchase
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


def purchase_entries(
    rules: PointsRules, *, purchase_id: int, base: int, bonus: int, kind: str
) -> list[tuple[int, str, str, str]]:
    """The ledger entries of a purchase's points, (delta, reason, key, note), in the order
    they are posted (entries of zero points are not posted; `models.purchases`)."""
    if kind == "double_points_day":
        note = f"double_points_day x{rules.double_points_multiplier.normalize():f}"
        base, bonus = base + bonus, 0
    else:
        note = ""
    entries = []
    if base > 0:
        entries.append((base, "purchase", f"purchase:{purchase_id}", note))
    if bonus > 0:
        entries.append((bonus, "birthday_bonus", f"birthday:{purchase_id}", "birthday"))
    return entries


async def _post_purchase_points(
    session: AsyncSession,
    *,
    rules: PointsRules,
    purchase: Purchase,
    base: int,
    bonus: int,
    kind: str,
) -> None:
    for delta, reason, key, note in purchase_entries(
        rules, purchase_id=purchase.id, base=base, bonus=bonus, kind=kind
    ):
        await post_points(
            session,
            rules=rules,
            member_id=purchase.member_id,
            delta=delta,
            reason=reason,
            key=key,
            note=note,
            at=purchase.at,
            local_date=purchase.local_date,
            purchase_id=purchase.id,
            check_key=False,  # keys derive from the purchase row inserted just now
        )
