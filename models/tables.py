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

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from models.types import Money, UTCDateTime, utcnow


def _ts(nullable: bool = False, index: bool = False):
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _now():
    """A timestamp column that defaults to the moment the row is created (UTC)."""
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


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
index ``ix_members_dormant_due`` holds only them: `scheduler.occasion_due.dormant`)."""


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
    created_at: datetime = _now()
    updated_at: datetime = _now()


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


class PendingAction(SQLModel, table=True):
    """A chat step waiting for the member's 确认/CONFIRM (a redemption, mailing a card).

    One per sender (channel + address): a new request replaces the old one. Valid until
    `expires_at` (10 minutes); any other message cancels it. `token` is random and new
    for every request: idempotency keys are derived from it (row ids can be reused).
    `completed_at` is set once confirmed, so a repeated confirmation gets the same answer.
    """

    __tablename__ = "pending_actions"
    __table_args__ = (UniqueConstraint("channel", "sender", name="uq_pending_actions_sender"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=10)
    sender: str = Field(max_length=64)
    member_id: int = _fk("members.id")
    kind: str = Field(max_length=20)  # "redeem" | "mail_card"
    payload: str = Field(default="{}", max_length=1000)
    """JSON: {"reward": code} or {"application_id": id, "address": text}."""
    token: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    completed_at: datetime | None = _ts(nullable=True)


class BindCode(SQLModel, table=True):
    """A 6-digit code sent by SMS to bind a WeChat openid to the member with that phone.

    Only a salted HMAC-SHA256 of the code is stored. Every request is a row, so the rows
    are also the rate-limit log (per openid and per phone). `member_id` is None when no
    member has the phone: then no SMS is sent and no attempt can succeed.
    status: pending | used | dead (5 wrong tries) | superseded (a newer code) | failed (not sent).
    """

    __tablename__ = "bind_codes"
    __table_args__ = (
        Index("ix_bind_codes_openid_created", "openid", "created_at"),
        Index("ix_bind_codes_phone_created", "phone", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    openid: str = Field(max_length=64)
    phone: str = Field(max_length=20)
    member_id: int | None = _fk("members.id", nullable=True, index=False)
    code_hash: str = Field(max_length=64)
    salt: str = Field(max_length=32)
    attempts: int = 0
    status: str = Field(default="pending", max_length=10)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class InboundMessage(SQLModel, table=True):
    """Webhook messages already seen, so a platform's retry has exactly one effect.

    WeChat retries a message it got no answer to within 5 s (3 tries in all) and
    may deliver one twice; de-duplicate messages by `FromUserName` + `MsgId` (one
    member's `MsgId` never finds another's answer), events by `FromUserName` +
    `CreateTime`; Twilio messages by `MessageSid`. Keys over 200 characters are
    hashed (`bot.inbound_log.bounded_key`). The first request
    inserts the row as `processing` (INSERT … ON CONFLICT DO NOTHING) and is the only
    one that handles it; the others read the stored answer. `bot/inbound_log.py`.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("channel", "dedupe_key", name="uq_inbound_messages_channel_key"),
    )
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=10)  # "wechat" | "sms"
    dedupe_key: str = Field(max_length=200)
    status: str = Field(default="processing", max_length=10)
    """processing | answered (passive reply stored) | deferred (answer goes through the
    WeChat customer-service API) | sent (the API took it) | failed (the API refused it)"""
    reply_text: str | None = None
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )
    answered_at: datetime | None = _ts(nullable=True)
    lease_until: datetime | None = _ts(nullable=True)
    """While `processing`: the holder's claim lasts until then; after it a retry may take
    the message over (its holder died or lost the database). Also the holder's fence: its
    later writes apply only while the row still carries its lease."""


class WeChatSignedUrl(SQLModel, table=True):
    """Signed WeChat URLs already used, each with the hash of the body it came with.

    A plain-mode signature covers the token, timestamp and nonce, not the body: a
    signed URL used again with another body → 403; with the same body (a retry) it is
    handled as usual. Rows whose `signed_at` is older than `wechat.max_timestamp_age`
    are purged (such URLs are refused as stale anyway). `bot/channels/wechat_replay.py`.
    """

    __tablename__ = "wechat_signed_urls"
    url_key: str = Field(primary_key=True, max_length=64)  # sha256 hex of timestamp + nonce
    body_hash: str = Field(max_length=64)  # sha256 hex of the body
    signed_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    """The request's `timestamp` (Unix seconds)."""


class SmsReceipt(SQLModel, table=True):
    """The provider's latest delivery state of one outgoing SMS (Twilio status callbacks).

    A callback may arrive before the send call has returned, so receipts are kept by
    provider message id on their own; a state never moves backwards
    (queued < sending < sent < delivered; failed/undelivered are final) — see
    `models/outbox/receipts.py` (MESSAGING.md "States of an outgoing message").
    """

    __tablename__ = "sms_receipts"
    id: int | None = Field(default=None, primary_key=True)
    provider_id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    status: str = Field(max_length=20)
    error_code: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class OutboxMessage(SQLModel, table=True):
    """One proactive message (MESSAGING.md "States of an outgoing message").

    `(member_id, kind, occasion)` is unique: the database, not a check-then-insert,
    guarantees a kind is never planned twice for one member and occasion, whichever
    replica or rerun plans it. `occasion` names what the message is about: the day
    for greetings ("2026-12-01"), the purchase ("purchase:123"), the card step
    ("card:45:approved"), the assistant's request ("greeting:<uuid>").
    Every status change is also appended to `outbox_events`.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("member_id", "kind", "occasion", name="uq_outbox_member_kind_occasion"),
        Index("ix_outbox_due", "status", "send_after"),
        Index("ix_outbox_member_send_after", "member_id", "send_after"),
    )
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = _fk("members.id", index=False)
    kind: str = Field(max_length=32)
    occasion: str = Field(max_length=64)
    planned_on: date
    """The brand day D the planner (or the assistant) created it for."""
    store_id: int | None = _fk("stores.id", nullable=True, index=False)
    assistant_id: int | None = _fk("assistants.id", nullable=True, index=False)
    locale: str = Field(default="zh_CN", max_length=5)
    text: str = ""
    channel: str = Field(default="", max_length=10)
    """wechat | sms | console | "" (suppressed before a channel was chosen)"""
    via: str = Field(default="", max_length=20)
    """customer_service | template | twilio | console"""
    address: str = Field(default="", max_length=64)
    status: str = Field(default="queued", max_length=15)
    """planned | queued | sending | sent | delivered | failed | undeliverable | suppressed"""
    reason: str | None = Field(default=None, max_length=200)
    send_after: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True)
    claimed_at: datetime | None = _ts(nullable=True)
    provider_id: str | None = Field(default=None, sa_column=Column(String(64), index=True))
    error_code: str | None = Field(default=None, max_length=32)
    created_at: datetime = _now()
    updated_at: datetime = _now()


class OutboxEvent(SQLModel, table=True):
    """Append-only: every status change of an outbox message, timestamped, with its reason."""

    __tablename__ = "outbox_events"
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = _fk("outbox.id")
    from_status: str = Field(max_length=15)
    to_status: str = Field(max_length=15)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    reason: str | None = Field(default=None, max_length=200)


class OutboxRate(SQLModel, table=True):
    """A channel's send rate, shared by every sender (`scheduler.ratelimit.SharedRateLimiter`):
    the Unix time before which no sender may let the next message through."""

    __tablename__ = "outbox_rates"
    channel: str = Field(primary_key=True, max_length=16)
    next_slot: float = Field(default=0.0)


class PlanRun(SQLModel, table=True):
    """One daily planning run per brand day: the unique day makes a second run a no-op
    and lets a restarted process catch up a run it missed earlier the same day."""

    __tablename__ = "plan_runs"
    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(sa_column=Column(Date, nullable=False, unique=True))
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = _ts(nullable=True)
    planned: int = 0
    suppressed: int = 0
    replica: str = Field(default="", max_length=100)


class StaffSession(SQLModel, table=True):
    """A signed-in staff-console session (`bot/staff`). The cookie carries a random id;
    only its SHA-256 is stored, so a leaked table does not open sessions. Signing out
    deletes the row; an expired row is refused and swept on the next sign-in."""

    __tablename__ = "staff_sessions"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    assistant_id: int = _fk("assistants.id", ondelete="CASCADE")
    csrf_token: str = Field(max_length=64)
    """Per-session anti-forgery token, required in every POST form."""
    locale: str = Field(default="zh_CN", max_length=5)
    created_at: datetime = _now()
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class StaffSignInFailure(SQLModel, table=True):
    """One failed (or still running) staff-console sign-in, counted against a key: the
    client address and, for a code-and-password sign-in, the account named
    (`models.staff_lockout`). `key` is a SHA-256, so no address or code is stored.
    Rows older than the window are swept by the next sign-in."""

    __tablename__ = "staff_sign_in_failures"
    __table_args__ = (Index("ix_staff_sign_in_failures_key_at", "key", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_column=Column(String(64), nullable=False))
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
