"""Stores, assistants, members and their channel identities, consent history and
assistant assignments."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Column,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _money, _now, _ts
from models.types import UTCDateTime


class Store(SQLModel, table=True):
    __tablename__ = "stores"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str = Field(max_length=200)
    city: str = Field(default="", max_length=100)
    phone: str = Field(default="", max_length=32)
    created_at: datetime = _now()


class Assistant(SQLModel, table=True):
    __tablename__ = "assistants"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str = Field(max_length=200)
    store_id: int = _fk("stores.id")
    token_hash: str | None = Field(default=None, sa_column=Column(String(64), unique=True))
    password_hash: str | None = Field(default=None, max_length=200)
    """Optional staff-console password set by the store: scrypt, `models.staff_auth`."""
    role: str = Field(
        default="assistant", max_length=10, sa_column_kwargs={"server_default": "assistant"}
    )
    """assistant | manager (the store manager sees the store's members and numbers)."""
    active: bool = True
    created_at: datetime = _now()


DORMANT_PENDING = (
    "last_purchase_at IS NOT NULL"
    " AND (dormant_noted_at IS NULL OR dormant_noted_at < last_purchase_at)"
)
"""Members whose ``dormant`` greeting is not recorded for their last purchase (the partial
index ``ix_members_dormant_due`` holds only them: `scheduler.plan.occasion_due.dormant`)."""


class Member(SQLModel, table=True):
    __tablename__ = "members"
    __table_args__ = (
        Index("ix_members_birthday", "birthday_calendar", "birthday_month", "birthday_day"),
        Index("ix_members_wedding", "wedding_month", "wedding_day"),
        # Join anniversaries: the planner asks for the same month/day of past years.
        Index("ix_members_join_date", "join_date"),
        # Dormant greetings: only members not yet greeted for their last purchase, by it.
        Index(
            "ix_members_dormant_due",
            "last_purchase_at",
            postgresql_where=text(DORMANT_PENDING),
            sqlite_where=text(DORMANT_PENDING),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(sa_column=Column(String(20), nullable=False, unique=True))
    name: str = Field(default="", max_length=100)
    gender: str | None = Field(default=None, max_length=1)
    birthday_year: int | None = None
    birthday_month: int | None = None
    birthday_day: int | None = None
    birthday_calendar: str = Field(default="solar", max_length=5)
    birthday_leap_month: bool = False
    """Lunar birthdays only: born in a leap month."""
    wedding_year: int | None = None
    wedding_month: int | None = None
    wedding_day: int | None = None
    join_date: date
    preferred_contact: str | None = Field(default=None, max_length=11)
    store_id: int | None = _fk("stores.id", nullable=True)
    assistant_id: int | None = _fk("assistants.id", nullable=True)
    card_no: str | None = Field(default=None, sa_column=Column(String(64), unique=True))
    address: str | None = Field(default=None, max_length=300)
    locale: str | None = Field(default=None, max_length=5)
    referrer_id: int | None = _fk("members.id", nullable=True)
    # Derived state, always changed in the same transaction as the history it summarises.
    points: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    cumulative_spend: Decimal = _money()
    visits: int = 0
    purchases_count: int = 0
    first_purchase_at: datetime | None = _ts(nullable=True)
    last_purchase_at: datetime | None = _ts(nullable=True, index=True)
    dormant_noted_at: datetime | None = _ts(nullable=True)
    """The `last_purchase_at` whose ``dormant`` greeting the planner recorded (queued or
    suppressed); a later purchase makes the member pending again (`DORMANT_PENDING`)."""
    tier: str = Field(default="", max_length=32)
    tier_since: date | None = None
    tier_expires: date | None = Field(default=None, index=True)
    eligible_tier: str | None = Field(default=None, max_length=32, index=True)
    eligible_since: date | None = None
    stopped: bool = False
    created_at: datetime = _now()
    updated_at: datetime = _now()


class Identity(SQLModel, table=True):
    """A channel address of a member: a WeChat openid or a phone number for SMS."""

    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("channel", "address", name="uq_identities_channel_address"),
        # One active WeChat account per member, also when two openids bind at once.
        Index(
            "uq_identities_member_active_wechat",
            "member_id",
            unique=True,
            postgresql_where=text("channel = 'wechat' AND active AND member_id IS NOT NULL"),
            sqlite_where=text("channel = 'wechat' AND active AND member_id IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    member_id: int | None = _fk("members.id", nullable=True)
    channel: str = Field(max_length=10)  # "wechat" | "sms"
    address: str = Field(max_length=64)
    active: bool = True
    bad: bool = False
    """The provider said the address cannot receive (invalid or non-mobile number)."""
    bad_reason: str | None = Field(default=None, max_length=200)
    last_inbound_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _now()


class ConsentEvent(SQLModel, table=True):
    """Proof of opting out and back in. Append-only; never deleted."""

    __tablename__ = "consent_events"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int | None = _fk("members.id", nullable=True)
    """None: the words came from an address that is no member's yet (`models.consent`);
    set when the address joins, the event kept as it was (time, channel, words)."""
    address: str | None = Field(default=None, max_length=64, index=True)
    """The phone (E.164) or openid the words came from; None for operator changes."""
    action: str = Field(max_length=10)  # "stop" | "resume"
    channel: str = Field(max_length=10)  # "wechat" | "sms" | "api" | "staff" | "provider"
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    source: str = Field(default="", max_length=200)
    """What triggered it: the member's words, an operator, a provider error code."""


class Assignment(SQLModel, table=True):
    """Which assistant owns a member, from when to when (DOMAIN.md §8). Append-only history:
    an assignment is closed by setting `ended_on`/`end_reason` once, never reopened."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_open", "ended_on", "probation_until"),
        # A member's open assignment (the purchase path, the import): one partial index
        # the planner picks even without table statistics (issue 14).
        Index(
            "ix_assignments_member_open",
            "member_id",
            postgresql_where=text("ended_on IS NULL"),
            sqlite_where=text("ended_on IS NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = _fk("members.id")
    assistant_id: int = _fk("assistants.id")
    start_on: date
    probation_until: date
    """If the member has not bought by this day, the member is taken back."""
    established: bool = False
    """The member bought during probation: the assistant keeps them."""
    reason: str = Field(max_length=20)  # opened | redistributed | purchase | manual
    ended_on: date | None = None
    end_reason: str | None = Field(default=None, max_length=20)
