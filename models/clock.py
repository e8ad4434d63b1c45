"""Brand-day arithmetic. Nothing here reads the clock except `brand_today`."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


def local_date(at: datetime, tz: ZoneInfo) -> date:
    """The brand's calendar day of an aware datetime."""
    return at.astimezone(tz).date()


def brand_today(tz: ZoneInfo, now: datetime | None = None) -> date:
    return local_date(now or datetime.now(UTC), tz)


def day_start(d: date, tz: ZoneInfo) -> datetime:
    """00:00 of the brand's day `d`, as an aware UTC datetime."""
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def day_end(d: date, tz: ZoneInfo) -> datetime:
    """00:00 of the day after `d` (exclusive end), as an aware UTC datetime."""
    return day_start(d + timedelta(days=1), tz)


def add_months(d: date, months: int) -> date:
    """Calendar months, clamped: 31 Jan + 1 month = 28/29 Feb."""
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def parse_aware(value: str, tz: ZoneInfo) -> datetime:
    """ISO 8601; a value without an offset is read as brand-local time."""
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt
