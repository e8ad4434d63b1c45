"""How long callbacks wait for the event loop right now: the time a request spent queued.

A webhook's 5-second clock starts when the platform sent the request, but a handler
only learns the time when it starts running. Under a burst, the request's bytes were
parsed and its handler task queued behind everything else the loop had to do — and
aiohttp keeps no arrival time. `LoopLag` measures that queueing: a timer every
`interval` seconds notes how late it runs; `lag` is the latest of those delays, slowly
forgotten (halved every `half_life`) so that a spike counts for a while. The webhook
takes its request to have arrived `lag` seconds before its handler started.
"""

from __future__ import annotations

import asyncio


class LoopLag:
    def __init__(self, *, interval: float = 0.02, half_life: float = 0.5):
        self.interval = interval
        self.half_life = half_life
        self._lag = 0.0
        self._measured_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def lag(self) -> float:
        """Seconds a callback scheduled now is expected to wait (0 when not started)."""
        if self._loop is None:
            return 0.0
        since = self._loop.time() - self._measured_at
        return self._lag * 0.5 ** (since / self.half_life)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._measured_at = self._loop.time()
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    def _schedule(self) -> None:
        assert self._loop is not None
        due = self._loop.time() + self.interval
        self._timer = self._loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        if self._loop is None:
            return
        late = max(0.0, self._loop.time() - due)
        self._lag = max(late, self.lag)
        self._measured_at = self._loop.time()
        self._schedule()
