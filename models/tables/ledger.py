"""The points ledger and its lots, vouchers, tier changes (append-only history)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Column,
    Index,
    String,
    text,
)
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _money, _now, _ts
from models.types import UTCDateTime


class PointsEntry(SQLModel, table=True):
    """The points ledger: append-only. `key` makes every change idempotent."""

    __tablename__ = "points_ledger"
    __table_args__ = (Index("ix_points_ledger_member_at", "member_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = _fk("members.id", index=False)
    delta: int
    reason: str = Field(max_length=20)
    """purchase | birthday_bonus | referral | visit | redemption | expiry | adjustment"""
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    local_date: date
    key: str = Field(sa_column=Column(String(120), nullable=False, unique=True))
    balance_after: int
    purchase_id: int | None = _fk("purchases.id", nullable=True)
    note: str = Field(default="", max_length=200)


class PointsLot(SQLModel, table=True):
    """What is left of one earning, and when it expires. Spent earliest-expiring first."""

    __tablename__ = "points_lots"
    __table_args__ = (
        Index("ix_points_lots_open", "member_id", "remaining"),
        # Open lots by expiry day: the daily expiry job reads only what is due.
        Index(
            "ix_points_lots_due",
            "expires_on",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = _fk("members.id", index=False)
    entry_id: int = _fk("points_ledger.id", index=False)
    earned_on: date
    expires_on: date | None = Field(default=None, index=True)
    points: int
    remaining: int


class Voucher(SQLModel, table=True):
    __tablename__ = "vouchers"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    member_id: int = _fk("members.id")
    reward_code: str = Field(max_length=32)
    value: Decimal = _money(default=None)
    status: str = Field(default="issued", max_length=10)  # issued | used | expired | void
    issued_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_on: date
    used_at: datetime | None = _ts(nullable=True)
    redemption_key: str = Field(sa_column=Column(String(120), nullable=False, unique=True))
    entry_id: int | None = _fk("points_ledger.id", nullable=True, index=False)


class TierChange(SQLModel, table=True):
    __tablename__ = "tier_changes"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = _fk("members.id")
    from_tier: str = Field(max_length=32)
    to_tier: str = Field(max_length=32)
    on: date
    reason: str = Field(max_length=40)  # upgrade | renewed | lapsed | card_approved | eligible
    at: datetime = _now()
