"""How many message handlers one process runs at once.

A burst of webhooks would otherwise start every handler at once: their steps then fill
the event loop's queue, each turn of the loop takes as long as all of them, and the
reply-deadline timers fire late — the answers miss WeChat's 5 seconds although each
deadline was set right. With a fixed number of slots the loop's turns stay short;
a message that finds none free waits for one (`bot.inbound_log`: until its deadline,
then it goes the late way and is handled when a slot frees up).

A slot is given back when its handler finishes, or after `hold_max` seconds if it is
still running: a handler stuck on something that never answers must not take a slot
for good (it goes on running; only the count forgets it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot import eager

T = TypeVar("T")

MAX_HANDLERS = 32
"""Handlers of one process under way at once."""
HOLD_MAX = 30.0
"""Seconds after which a handler still running no longer counts against the slots."""


class HandlerSlots:
    def __init__(self, size: int = MAX_HANDLERS, *, hold_max: float = HOLD_MAX):
        self._free = asyncio.Semaphore(size)
        self.hold_max = hold_max

    def full(self) -> bool:
        return self._free.locked()

    async def acquire(self) -> None:
        """Wait for a free slot (returns at once if there is one)."""
        await self._free.acquire()

    def give_back_when_acquired(self, acquiring: asyncio.Future) -> None:
        """For an `acquire()` task whose slot will not be used after all."""

        def done(future: asyncio.Future) -> None:
            if not future.cancelled() and future.exception() is None:
                self._free.release()

        acquiring.add_done_callback(done)

    def start(self, handler: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run `handler` (`bot.eager`) in a slot already acquired; the slot is given back
        when it finishes or after `hold_max` seconds, whichever comes first."""
        task = eager.start(handler())
        if task.done():  # answered without waiting (most are): no timer needed
            self._free.release()
            return task
        held = True

        def give_back(_=None) -> None:
            nonlocal held
            if held:
                held = False
                self._free.release()
                timer.cancel()

        timer = asyncio.get_running_loop().call_later(self.hold_max, give_back)
        task.add_done_callback(give_back)
        return task
