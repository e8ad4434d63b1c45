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

`SharedRateLimiter` holds one rate across every sender process on the database (the
replicas of `memberbot serve`, a `memberbot outbox` run beside them): the channel's
row in `outbox_rates` keeps the Unix time before which nobody may let the next
message through, and a sender takes a turn with one conditional UPDATE —
``SET next_slot = now + (1 + SHARED_MARGIN) / rate WHERE next_slot <= now`` — that only
one of them can win (a row lock on PostgreSQL, the single writer on SQLite). A turn is
recorded when it is taken, not booked ahead, so a process woken late never lets the
next one follow closely: any two turns of the channel, whoever took them, are at least
`(1 + SHARED_MARGIN) / rate` seconds apart, and no second holds more than `rate` of
them. A provider's `Retry-After` moves the row's time forward (`hold`), so every
sender waits for it. The margin absorbs the spread of the few milliseconds between a turn and the
provider receiving the call. The times are the hosts' wall clocks (one host, or hosts
kept in step by NTP). Cost: one small write per message (none at rate 0).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import insert_ignore, transaction
from models.tables.outbox import OutboxRate

SHARED_MARGIN = 0.05
"""`SharedRateLimiter` spaces turns by (1 + this) / rate (see the module docstring)."""


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


_RATES = OutboxRate.__table__
_TAKE = (
    update(_RATES)
    .where(_RATES.c.channel == bindparam("b_channel"), _RATES.c.next_slot <= bindparam("b_now"))
    .values(next_slot=bindparam("b_next"))
)


class SharedRateLimiter:
    """One channel's rate across every sender on the database (module docstring).
    Same interface as `RateLimiter`: `rate`, `await acquire()`."""

    def __init__(
        self,
        rate: float | None,
        *,
        sessions: async_sessionmaker[AsyncSession],
        channel: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate or None
        self.channel = channel
        self._sessions = sessions
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        """One waiter of this process at a time asks the database (FIFO here)."""
        self._row = False

    @property
    def interval(self) -> float:
        return (1.0 + SHARED_MARGIN) / self.rate if self.rate else 0.0

    async def acquire(self) -> None:
        """Wait for this caller's turn. A cancelled wait takes no turn."""
        if self.rate is None:
            return
        async with self._lock:
            while True:
                wait = await self._take()
                if wait <= 0:
                    return
                await self._sleep(wait)

    async def hold(self, seconds: float) -> None:
        """No sender takes a turn on this channel for `seconds` from now (the provider's
        `Retry-After`): every replica waits, not only the one that was told."""
        if self.rate is None or seconds <= 0:
            return
        async with transaction(self._sessions) as session:
            await self._ensure_row(session)
            until = self._clock() + seconds
            await session.exec(
                update(_RATES)
                .where(_RATES.c.channel == self.channel, _RATES.c.next_slot < until)
                .values(next_slot=until)
            )

    async def _ensure_row(self, session: AsyncSession) -> None:
        if not self._row:
            stmt = insert_ignore(session.bind.dialect.name, _RATES).values(
                channel=self.channel, next_slot=0.0
            )
            await session.exec(stmt.on_conflict_do_nothing(index_elements=["channel"]))
            self._row = True

    async def _take(self) -> float:
        """Take the channel's turn now (0), or say how long until it may be free."""
        async with transaction(self._sessions) as session:
            await self._ensure_row(session)
            now = self._clock()
            params = {"b_channel": self.channel, "b_now": now, "b_next": now + self.interval}
            if (await session.exec(_TAKE, params=params)).rowcount == 1:
                return 0.0
            stmt = select(_RATES.c.next_slot).where(_RATES.c.channel == self.channel)
            slot = (await session.exec(stmt)).scalar_one()
        return max(slot - now, 0.001)
