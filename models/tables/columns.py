"""The column helpers every table module uses: timestamps, money, foreign keys."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
)
from sqlmodel import Field

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
