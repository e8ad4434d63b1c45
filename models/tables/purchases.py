"""Purchases and their items."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Column,
    Index,
    String,
)
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _money, _now
from models.types import UTCDateTime


class Purchase(SQLModel, table=True):
    __tablename__ = "purchases"
    __table_args__ = (
        Index("ix_purchases_member_at", "member_id", "at"),
        Index("ix_purchases_member_local_date", "member_id", "local_date"),  # tier windows
    )
    id: int | None = Field(default=None, primary_key=True)
    receipt_no: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    member_id: int = _fk("members.id", index=False)
    store_id: int = _fk("stores.id")
    assistant_id: int | None = _fk("assistants.id", nullable=True)
    amount: Decimal = _money(default=None)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    local_date: date = Field(index=True)
    """The sale's day in the brand's timezone (day 1 of the care calendar)."""
    points: int = 0
    """Points this purchase earned the member (base + bonuses)."""
    referrer_id: int | None = _fk("members.id", nullable=True, index=False)
    created_at: datetime = _now()


class PurchaseItem(SQLModel, table=True):
    __tablename__ = "purchase_items"
    id: int | None = Field(default=None, primary_key=True)
    purchase_id: int = _fk("purchases.id", ondelete="CASCADE")
    sku: str = Field(default="", max_length=64)
    name: str = Field(default="", max_length=200)
    category: str = Field(default="", max_length=64)
    brand: str = Field(default="", max_length=64)
    qty: int = 1
    amount: Decimal = _money()
