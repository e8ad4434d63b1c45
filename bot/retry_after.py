"""`Retry-After` (RFC 9110 §10.2.3): how long a provider asked us to wait.

Twilio and WeChat may answer 429 or 503 with it, as seconds or as an HTTP date. The
outbox sender waits at least that long before the next call to that provider
(`scheduler.send.sender`).
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 3600.0
"""Seconds: a longer (or absurd) value is cut to this."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from `now` (a Unix time, default the wall clock), or None when
    `value` is missing or not a delay in seconds nor an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(int(value[:12]))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(seconds, MAX_RETRY_AFTER))
