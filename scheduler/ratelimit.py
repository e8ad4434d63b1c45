"""Per-channel send rate: messages per second, held exactly (MESSAGING.md "SMS (Twilio)":
"Respect the sender's rate (messages per second, configurable)").

`RateLimiter(rate).acquire()` lets callers through one at a time (FIFO), under two rules:

- pacing: the n-th message of a busy spell is let through no earlier than its slot,
  `1 / rate` seconds after the previous slot (a token bucket of depth 1, in its
  "virtual scheduling" form), so the long-run rate is exactly `rate`;
- a hard window: never more than `rate` messages in any one second (in general at
  most `max(1, ⌊rate⌋)` in any `⌊rate⌋ / rate` seconds). An event loop that woke a
  caller late would otherwise let the next one follow closely to keep the schedule,
  and a second could hold one message too many.

A rate of 0 (or None) means no limit. The clock and the sleep are injectable, so tests
run on a fake clock (no timing-based tests); `bench/bench_outbox.py` measures the real
accuracy.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable


class RateLimiter:
    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate or None
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._next_slot = -math.inf
        count = max(1, math.floor(rate)) if rate else 1
        self._window = count / rate if rate else 0.0
        self._recent: deque[float] = deque(maxlen=count)
        """When the last `count` messages were let through."""

    @property
    def interval(self) -> float:
        return 1.0 / self.rate if self.rate else 0.0

    def _slot(self, now: float) -> float:
        slot = max(now, self._next_slot)
        if len(self._recent) == self._recent.maxlen:
            slot = max(slot, self._recent[0] + self._window)
        return slot

    async def acquire(self) -> None:
        """Wait for this caller's turn. A cancelled wait takes no slot."""
        if self.rate is None:
            return
        async with self._lock:
            slot = self._slot(self._clock())
            delay = slot - self._clock()
            if delay > 0:
                await self._sleep(delay)
            self._next_slot = slot + self.interval
            self._recent.append(max(slot, self._clock()))
