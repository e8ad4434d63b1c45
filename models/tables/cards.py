"""Membership card applications and their steps."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Column,
)
from sqlmodel import Field, SQLModel

from models.tables.columns import _fk, _now
from models.types import UTCDateTime


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
