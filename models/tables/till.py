"""The till's tables: what happens to a voucher at the till (`VoucherEvent`) and returns
(`SaleReturn`, `ReturnItem`). Both are append-only history.

Rules that write them: `models.voucher_till` (use, void, expiry of vouchers) and
`models.returns` (a return of items of a recorded sale).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _money, _now, _ts
from models.types import UTCDateTime


class VoucherEvent(SQLModel, table=True):
    """One step of a voucher after it was issued: ``use`` (at a store, for a receipt),
    ``void`` (with a reason; ``entry_id`` is the ledger entry that gave the points back)
    or ``expire`` (the daily job). Who did it is ``actor`` (an API key's ``operator``,
    a staff member's code, ``cli``, ``job``)."""

    __tablename__ = "voucher_events"
    id: int | None = Field(default=None, primary_key=True)
    voucher_id: int = _fk("vouchers.id")
    action: str = Field(max_length=10)  # use | void | expire
    at: datetime = _ts()
    store_id: int | None = _fk("stores.id", nullable=True, index=False)
    receipt_no: str | None = Field(default=None, max_length=64)
    actor: str = Field(default="", max_length=100)
    reason: str = Field(default="", max_length=200)
    entry_id: int | None = _fk("points_ledger.id", nullable=True, index=False)


class SaleReturn(SQLModel, table=True):
    """A return of items of one recorded sale (`return_no` is unique: a retry records
    nothing twice). ``points`` were taken back from the member (a ``return`` ledger
    entry), ``referral_points`` from the referrer of that sale; ``amount`` falls off the
    member's cumulative spend and off the sale's day in the tier measures
    (``sale_date``)."""

    __tablename__ = "sale_returns"
    id: int | None = Field(default=None, primary_key=True)
    return_no: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    purchase_id: int = _fk("purchases.id")
    member_id: int = _fk("members.id")
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    local_date: date
    sale_date: date = Field(index=True)
    amount: Decimal = _money()
    points: int = 0
    referral_points: int = 0
    created_at: datetime = _now()


class ReturnItem(SQLModel, table=True):
    __tablename__ = "return_items"
    id: int | None = Field(default=None, primary_key=True)
    return_id: int = _fk("sale_returns.id")
    sku: str = Field(default="", max_length=64)
    qty: int = 1
    amount: Decimal = _money()
