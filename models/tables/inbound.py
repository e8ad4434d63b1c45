"""Webhook de-duplication: inbound messages already seen, signed WeChat URLs used."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from models.tables.columns import _ts
from models.types import UTCDateTime, utcnow


class InboundMessage(SQLModel, table=True):
    """Webhook messages already seen, so a platform's retry has exactly one effect.

    WeChat retries a message it got no answer to within 5 s (3 tries in all) and
    may deliver one twice; de-duplicate messages by `FromUserName` + `MsgId` (one
    member's `MsgId` never finds another's answer), events by `FromUserName` +
    `CreateTime`; Twilio messages by `MessageSid`. Keys over 200 characters are
    hashed (`bot.inbound_outcome.bounded_key`). The first request
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
