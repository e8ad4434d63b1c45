"""Column types that keep money exact and datetimes timezone-aware on every engine."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.types import TypeDecorator

CENT = Decimal("0.01")


def to_cents(value: Decimal) -> int:
    """Yuan → integer cents; refuses fractions of a cent rather than rounding them away."""
    q = value.quantize(CENT, rounding=ROUND_HALF_UP)
    if q != value:
        raise ValueError(f"{value} has more than two decimal places")
    return int(q * 100)


def from_cents(cents: int | None) -> Decimal:
    return (Decimal(cents or 0) / 100).quantize(CENT)


class Money(TypeDecorator):
    """Yuan as `Decimal` in Python, integer cents in the database (exact on SQLite too)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return to_cents(Decimal(value))

    def process_result_value(self, value, dialect):
        return None if value is None else from_cents(value)


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes stored in UTC; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
