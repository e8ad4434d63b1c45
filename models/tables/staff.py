"""Staff console sessions and failed sign-ins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Column,
    Index,
    String,
)
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _now
from models.types import UTCDateTime


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
