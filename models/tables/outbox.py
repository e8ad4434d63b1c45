"""The outbox: proactive messages, their status history, shared send rates, plan
runs, and SMS delivery receipts."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Column,
    Date,
    Index,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _now, _ts
from models.types import UTCDateTime, utcnow


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
    request_id: str | None = Field(default=None, max_length=64)
    """The request or daily run that created it (`models.context.request_id`), so an
    operator can follow one request from its access-log line to the messages it queued."""
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
    """A channel's send rate, shared by every sender (`scheduler.send.ratelimit.SharedRateLimiter`):
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
