"""The inbox's tables: conversations handed to a person and their messages (the rules:
`models.inbox`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, String, Text, text
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _ts

LIVE = "status <> 'closed'"
"""A conversation that is not closed (at most one per `thread_key`)."""


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    __table_args__ = (
        Index(
            "uq_conversations_live_thread",
            "thread_key",
            unique=True,
            postgresql_where=text(LIVE),
            sqlite_where=text(LIVE),
        ),
        Index("ix_conversations_status_updated", "status", "updated_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    thread_key: str = Field(sa_column=Column(String(80), nullable=False))
    member_id: int | None = _fk("members.id", nullable=True)
    channel: str = Field(max_length=10)
    """Where the member last wrote from: wechat | sms | console."""
    address: str = Field(max_length=64)
    """The openid or phone number the member last wrote from."""
    assistant_id: int | None = _fk("assistants.id", nullable=True)
    """Who answers: the owning assistant; None → the store's managers."""
    store_id: int | None = _fk("stores.id", nullable=True)
    """The member's store; None (no member) → every store's managers."""
    status: str = Field(default="open", max_length=10)
    opened_at: datetime = _ts()
    updated_at: datetime = _ts()
    """The last message's time (the inbox is sorted by it)."""
    closed_at: datetime | None = _ts(nullable=True)
    closed_by: int | None = _fk("assistants.id", nullable=True, index=False)


class ConversationMessage(SQLModel, table=True):
    __tablename__ = "conversation_messages"
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = _fk("conversations.id")
    author: str = Field(max_length=10)
    """member | assistant | bot"""
    assistant_id: int | None = _fk("assistants.id", nullable=True, index=False)
    """The assistant who wrote a reply."""
    text: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = _ts()
    channel: str = Field(max_length=10)
    via: str | None = Field(default=None, max_length=20)
    status: str | None = Field(default=None, max_length=10)
    """A reply's delivery: sent | failed (None for what the member or the bot wrote)."""
    error: str | None = Field(default=None, max_length=200)
