"""Vouchers at the till: use, void, expiry (DOMAIN.md §4; CONTRACT.md
`POST /api/vouchers/{code}/use|void`). Issuing is `models.vouchers`.

A voucher moves ``issued`` → ``used`` | ``void`` | ``expired``, once:

- **use** (`use_voucher`): one conditional statement, ``UPDATE vouchers SET
  status='used' WHERE code=:c AND status='issued' AND expires_on >= :today``. On
  PostgreSQL two uses of one voucher (two app instances, READ COMMITTED) both try it;
  the second waits for the first's row lock and, once the first has committed,
  re-checks the condition against ``used`` and matches nothing: exactly one use.
  SQLite runs writers one at a time. A use that matched nothing says why: unknown
  code → `NotFound`; used / void / expired (or issued but past its last day, not yet
  swept by the daily job) → `Conflict` with that word. A use repeated with the same
  store and receipt number as the recorded one (a till retrying) answers the voucher
  again and changes nothing.
- **void** (`void_voucher`, a reason required): the same conditional step from
  ``issued``; the points the voucher cost (its issuing ledger entry) come back as a
  ``voucher_void`` entry (key ``void:<voucher id>``), so the ledger explains them.
  Used, void or expired → `Conflict` (an expired voucher's points are gone with it).
- **expiry** (`expire_vouchers`, the daily job): issued vouchers past their last day.

Every step is a `VoucherEvent` row: who (``actor``), where, for which receipt, why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import local_date
from models.errors import Conflict, InvalidInput, NotFound
from models.points import post_points
from models.rules import LoyaltyRules
from models.stores import store_codes
from models.tables.ledger import PointsEntry, Voucher
from models.tables.members import Member, Store
from models.tables.till import VoucherEvent

VOUCHERS = Voucher.__table__
EVENTS = VoucherEvent.__table__


def normalise_code(code: str) -> str:
    """Codes are printed in capitals without separators; a cashier may type them otherwise."""
    return "".join(ch for ch in code.strip().upper() if ch not in " -")


async def find_voucher(session: AsyncSession, *, code: str) -> Voucher:
    """The voucher with this code; `NotFound` (field "code") if there is none."""
    found = (
        await session.exec(select(Voucher).where(Voucher.code == normalise_code(code)))
    ).first()
    if found is None:
        raise NotFound("no voucher with this code", "code")
    return found


def state(voucher: Voucher, today: date) -> str:
    """The voucher's state on `today`: an issued voucher past its last day is expired even
    before the daily job marks it so."""
    if voucher.status == "issued" and voucher.expires_on < today:
        return "expired"
    return voucher.status


async def _step(
    session: AsyncSession, *, code: str, to: str, today: date, now: datetime
) -> int | None:
    """issued → `to` for a voucher still within its days; its id, or None if not issued."""
    stmt = (
        VOUCHERS.update()
        .where(
            VOUCHERS.c.code == code,
            VOUCHERS.c.status == "issued",
            VOUCHERS.c.expires_on >= today,
        )
        .values(status=to, **({"used_at": now} if to == "used" else {}))
        .returning(VOUCHERS.c.id)
    )
    return (await session.exec(stmt)).scalar_one_or_none()


async def _refused(session: AsyncSession, code: str, today: date, doing: str) -> Conflict:
    voucher = await find_voucher(session, code=code)
    now_state = state(voucher, today)
    return Conflict(f"the voucher cannot be {doing}: it is {now_state}", "code")


async def _reload(session: AsyncSession, voucher_id: int) -> Voucher:
    stmt = select(Voucher).where(Voucher.id == voucher_id).execution_options(populate_existing=True)
    return (await session.exec(stmt)).one()


async def _last_use(session: AsyncSession, voucher_id: int) -> VoucherEvent | None:
    stmt = select(VoucherEvent).where(
        VoucherEvent.voucher_id == voucher_id, VoucherEvent.action == "use"
    )
    return (await session.exec(stmt)).first()


async def use_voucher(
    session: AsyncSession,
    *,
    tz: ZoneInfo,
    code: str,
    store_code: str,
    receipt_no: str | None,
    actor: str,
    now: datetime,
    member_id: int | None = None,
) -> tuple[Voucher, bool]:
    """Use the voucher at `store_code` (for `receipt_no`); (voucher, True if used now).

    Unknown store → InvalidInput "store"; `member_id` given (a sale): a voucher of
    another member → Conflict. See the module docstring for the rest.
    """
    code = normalise_code(code)
    store = (await session.exec(select(Store).where(Store.code == store_code))).first()
    if store is None:
        raise InvalidInput("unknown store", "store")
    today = local_date(now, tz)
    if member_id is not None:
        voucher = await find_voucher(session, code=code)
        if voucher.member_id != member_id:
            raise Conflict("the voucher belongs to another member", "vouchers")
    voucher_id = await _step(session, code=code, to="used", today=today, now=now)
    if voucher_id is None:
        voucher = await find_voucher(session, code=code)
        if voucher.status == "used" and receipt_no:
            use = await _last_use(session, voucher.id)
            if use and use.receipt_no == receipt_no and use.store_id == store.id:
                return voucher, False  # the same use again: a till retrying
        raise await _refused(session, code, today, "used")
    event = dict(voucher_id=voucher_id, action="use", at=now, store_id=store.id)
    event.update(receipt_no=receipt_no, actor=actor[:100])
    await session.exec(EVENTS.insert(), params=event)
    return await _reload(session, voucher_id), True


async def void_voucher(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    code: str,
    reason: str,
    actor: str,
    now: datetime,
) -> Voucher:
    """Void an issued voucher and give its points back (a ``voucher_void`` entry)."""
    if not reason.strip():
        raise InvalidInput("a void needs a reason", "reason")
    code = normalise_code(code)
    today = local_date(now, tz)
    voucher_id = await _step(session, code=code, to="void", today=today, now=now)
    if voucher_id is None:
        raise await _refused(session, code, today, "voided")
    voucher = await _reload(session, voucher_id)
    entry_id = None
    cost = 0
    if voucher.entry_id is not None:
        issued = await session.get(PointsEntry, voucher.entry_id)
        cost = -issued.delta if issued is not None and issued.delta < 0 else 0
    if cost > 0:
        entry = await post_points(
            session,
            rules=rules.points,
            member_id=voucher.member_id,
            delta=cost,
            reason="voucher_void",
            key=f"void:{voucher.id}",
            at=now,
            local_date=today,
            note=f"{voucher.code} {actor}: {reason}",
        )
        entry_id = entry.id if entry is not None else None
    event = dict(voucher_id=voucher.id, action="void", at=now, actor=actor[:100])
    event.update(reason=reason.strip()[:200], entry_id=entry_id)
    await session.exec(EVENTS.insert(), params=event)
    return voucher


@dataclass(frozen=True)
class VoucherHistory:
    """A voucher as the till sees it (the API and the console show the same facts)."""

    voucher: Voucher
    phone: str | None
    """Its member's number, unmasked (None when the member was erased): views mask it."""
    events: list[tuple[VoucherEvent, str | None]]
    """What happened to it after it was issued, oldest first, each with its store's code."""


async def voucher_history(session: AsyncSession, *, voucher: Voucher) -> VoucherHistory:
    """`voucher`'s member and events, with the codes of the stores they happened at."""
    member = await session.get(Member, voucher.member_id)
    stmt = select(VoucherEvent).where(VoucherEvent.voucher_id == voucher.id)
    events = list((await session.exec(stmt.order_by(VoucherEvent.id))).all())
    codes = await store_codes(session, store_ids={e.store_id for e in events})
    phone = member.phone if member is not None else None
    return VoucherHistory(voucher, phone, [(e, codes.get(e.store_id)) for e in events])


async def expire_vouchers(session: AsyncSession, *, today: date, now: datetime) -> int:
    """Mark issued vouchers past their last day (`expires_on` < `today`) expired, each with
    an ``expire`` event; how many."""
    stmt = (
        VOUCHERS.update()
        .where(VOUCHERS.c.status == "issued", VOUCHERS.c.expires_on < today)
        .values(status="expired")
        .returning(VOUCHERS.c.id)
    )
    ids = list((await session.exec(stmt)).scalars())
    if ids:
        rows = [dict(voucher_id=i, action="expire", at=now, actor="job") for i in ids]
        await session.exec(EVENTS.insert(), params=rows)
    return len(ids)
