"""Retry timing for the sender: exponential backoff and the per-channel circuit breaker.

A retryable failure waits `backoff(attempts)`; the channel it happened on pauses
for the backoff of its consecutive failed probes (`ChannelBreaker`), so while a
provider is down one message probes it and the others wait, ``queued``, without
using up their attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_BACKOFF = 300.0
"""Seconds: the longest wait between two tries (CONTRACT.md `retry_backoff`)."""


def backoff(attempts: int, base: float) -> float:
    """Seconds before try `attempts + 1`: base × 2^(attempts − 1), at most 300."""
    return min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1))


@dataclass
class _Pause:
    until: datetime
    failures: int = 0


class ChannelBreaker:
    """Which channels are paused after failures, and until when."""

    def __init__(self, base: float):
        self._base = base
        self._paused: dict[str, _Pause] = {}

    def paused_until(self, channel: str, now: datetime) -> datetime | None:
        """The end of the channel's pause, or None when it is not paused at `now`."""
        pause = self._paused.get(channel)
        return pause.until if pause is not None and pause.until > now else None

    def is_paused(self, channel: str, now: datetime) -> bool:
        return self.paused_until(channel, now) is not None

    def failed(self, channel: str, now: datetime) -> None:
        """After a retryable failure: keep off `channel` for the backoff of its
        consecutive failed probes (failures while already paused add nothing)."""
        pause = self._paused.get(channel)
        if pause is not None and pause.until > now:
            return
        failures = (pause.failures if pause else 0) + 1
        wait = backoff(failures, self._base)
        self._paused[channel] = _Pause(until=now + timedelta(seconds=wait), failures=failures)

    def answered(self, channel: str) -> None:
        """The provider answered (accepted or refused): the channel is up."""
        self._paused.pop(channel, None)
