"""The whole schema: every table module imported for its effect, so `SQLModel.metadata`
(`METADATA`) holds every table — what the migrations are generated from and checked
against. A new table module is added here."""

from __future__ import annotations

from sqlmodel import SQLModel

from models.tables import (  # noqa: F401  (each module registers its tables)
    cards,
    conversation,
    inbound,
    inbox,
    ledger,
    members,
    outbox,
    purchases,
    staff,
    till,
)

METADATA = SQLModel.metadata
