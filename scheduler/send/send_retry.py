"""Retry timing for the sender: exponential backoff and the per-channel circuit breaker.

A retryable failure waits `backoff(attempts)` (or longer, when the provider asked for
it with `Retry-After`); the channel it happened on pauses for the backoff of its
consecutive failures (`ChannelBreaker`), so while a provider is down one message at a
time probes it and the others wait, ``queued``, without using up their attempts.

A provider that is down or throttling (`Retryable.outage`) costs a message an attempt
only on the call that found it down — the first failure after the channel last
answered; the probes that follow while the breaker is open cost none, so however long
the outage, a message loses at most one attempt per sender to it and is never given
up for it. A message the provider keeps refusing while it answers others still spends
an attempt each time (the channel answered in between) and gives up after
`max_attempts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_BACKOFF = 300.0
"""Seconds: the longest wait between two tries (CONTRACT.md `retry_backoff`)."""
DOWN_NOTE = "provider down"
"""In the reason of a message that failed because its provider was down or throttling
(how the release after recovery finds them)."""
PROBE_NOTE = DOWN_NOTE + ", attempt not counted"
"""… and of one whose failed call was a probe (it cost no attempt)."""
HELD_PREFIX = "held: "
"""Starts the reason of a message held while its channel is paused."""


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
        self._probing: set[str] = set()

    def paused_until(self, channel: str, now: datetime) -> datetime | None:
        """The end of the channel's pause, or None when it is not paused at `now`."""
        pause = self._paused.get(channel)
        return pause.until if pause is not None and pause.until > now else None

    def is_paused(self, channel: str, now: datetime) -> bool:
        return self.paused_until(channel, now) is not None

    def is_down(self, channel: str) -> bool:
        """The channel's last call failed and none answered since: a call now is a probe."""
        return channel in self._paused

    def start_probe(self, channel: str) -> bool:
        """Become the one probe of a channel that is down; False when another call is
        probing it already (the caller holds its message instead)."""
        if channel in self._probing:
            return False
        self._probing.add(channel)
        return True

    def end_probe(self, channel: str) -> None:
        self._probing.discard(channel)

    def failed(self, channel: str, now: datetime, *, retry_after: float | None = None) -> None:
        """After a retryable failure: keep off `channel` for the backoff of its
        consecutive failed probes, or for as long as the provider asked (`retry_after`
        seconds) if that is longer. Failures while already paused only lengthen the
        pause to a later `retry_after`."""
        pause = self._paused.get(channel)
        asked = None if retry_after is None else now + timedelta(seconds=retry_after)
        if pause is not None and pause.until > now:
            if asked is not None and asked > pause.until:
                pause.until = asked
            return
        failures = (pause.failures if pause else 0) + 1
        until = now + timedelta(seconds=backoff(failures, self._base))
        self._paused[channel] = _Pause(until=max(until, asked or until), failures=failures)

    def answered(self, channel: str) -> bool:
        """The provider answered (accepted or refused): the channel is up. True when it
        was down until now (the messages held for it may go at once)."""
        return self._paused.pop(channel, None) is not None
