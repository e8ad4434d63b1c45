"""The database tables (SQLModel). Rules that change them live in the sibling modules.

Conventions: money is `Money` (Decimal yuan, integer cents in the database);
datetimes are `UTCDateTime` (aware, stored in UTC); calendar dates that belong
to the brand's day (a lot's expiry, a join date) are plain `date`s reckoned in
the brand's timezone. History tables (`points_ledger`, `consent_events`,
`card_events`, `tier_changes`, `assignments`) are append-only.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Column, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.types import Money, UTCDateTime, utcnow


def _ts(nullable: bool = False, index: bool = False):
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _money(default: Decimal | None = Decimal("0"), nullable: bool = False):
    return Field(default=default, sa_column=Column(Money(), nullable=nullable))


def _fk(target: str, nullable: bool = False, index: bool = True, ondelete: str | None = None):
    return Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index
        ),
    )


class Store(SQLModel, table=True):
    __tablename__ = "stores"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str = Field(max_length=200)
    city: str = Field(default="", max_length=100)
    phone: str = Field(default="", max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Assistant(SQLModel, table=True):
    __tablename__ = "assistants"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str = Field(max_length=200)
    store_id: int = _fk("stores.id")
    token_hash: str | None = Field(default=None, sa_column=Column(String(64), unique=True))
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Member(SQLModel, table=True):
    __tablename__ = "members"
    __table_args__ = (
        Index("ix_members_birthday", "birthday_calendar", "birthday_month", "birthday_day"),
        Index("ix_members_wedding", "wedding_month", "wedding_day"),
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
    tier: str = Field(default="", max_length=32)
    tier_since: date | None = None
    tier_expires: date | None = Field(default=None, index=True)
    eligible_tier: str | None = Field(default=None, max_length=32, index=True)
    eligible_since: date | None = None
    stopped: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Identity(SQLModel, table=True):
    """A channel address of a member: a WeChat openid or a phone number for SMS."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("channel", "address", name="uq_identities_channel_address"),)
    id: int | None = Field(default=None, primary_key=True)
    member_id: int | None = _fk("members.id", nullable=True)
    channel: str = Field(max_length=10)  # "wechat" | "sms"
    address: str = Field(max_length=64)
    active: bool = True
    bad: bool = False
    """The provider said the address cannot receive (invalid or non-mobile number)."""
    bad_reason: str | None = Field(default=None, max_length=200)
    last_inbound_at: datetime | None = _ts(nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class ConsentEvent(SQLModel, table=True):
    """Proof of opting out and back in. Append-only; never deleted."""

    __tablename__ = "consent_events"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = _fk("members.id")
    action: str = Field(max_length=10)  # "stop" | "resume"
    channel: str = Field(max_length=10)  # "wechat" | "sms" | "api" | "staff" | "provider"
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    source: str = Field(default="", max_length=200)
    """What triggered it: the member's words, an operator, a provider error code."""


class Purchase(SQLModel, table=True):
    __tablename__ = "purchases"
    __table_args__ = (Index("ix_purchases_member_at", "member_id", "at"),)
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
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


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
    __table_args__ = (Index("ix_points_lots_open", "member_id", "remaining"),)
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
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class CardApplication(SQLModel, table=True):
    """The card tracker of DOMAIN.md §5; steps are recorded in `card_events`."""

    __tablename__ = "card_applications"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = _fk("members.id")
    tier: str = Field(max_length=32)
    status: str = Field(default="applied", max_length=20, index=True)
    store_id: int | None = _fk("stores.id", nullable=True)
    assistant_id: int | None = _fk("assistants.id", nullable=True, index=False)
    pickup_date: date | None = None
    """The day the member agreed to come for the card."""
    mail_address: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class CardEvent(SQLModel, table=True):
    __tablename__ = "card_events"
    id: int | None = Field(default=None, primary_key=True)
    application_id: int = _fk("card_applications.id")
    from_status: str = Field(max_length=20)
    to_status: str = Field(max_length=20)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(default="", max_length=100)
    """Who made the step: "api", "assistant:<code>", "member:<channel>", "system"."""
    note: str = Field(default="", max_length=300)


class Assignment(SQLModel, table=True):
    """Which assistant owns a member, from when to when (DOMAIN.md §8). Append-only history:
    an assignment is closed by setting `ended_on`/`end_reason` once, never reopened."""

    __tablename__ = "assignments"
    __table_args__ = (Index("ix_assignments_open", "ended_on", "probation_until"),)
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
