"""Chat state: actions waiting for confirmation, WeChat bind codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Column,
    Index,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _ts
from models.types import UTCDateTime


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
