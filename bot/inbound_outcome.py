"""What one request for an inbound message answers (`Outcome`), and how a duplicate
finds the first request's outcome: in this process by its future (`wait_local`), across
processes by reading the row until it leaves `processing` (`poll`); and the late way of
an answer not ready by the deadline (`deliver_late`). `bot.inbound_log` describes the
protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot.conversation import Reply
from bot.inbound_store import ANSWERED, FAILED, PROCESSING, SENT, Claim, InboundStore, Seen
from models.types import utcnow

log = logging.getLogger("memberbot.inbound")

LATE_POLL_INTERVAL = 0.25
"""Seconds between the reads of a copy still waiting for a holder after its deadline."""
KEY_MAX = 200
"""`inbound_messages.dedupe_key` is a varchar(200)."""


def bounded_key(key: str) -> str:
    """A de-duplication key that fits the column: a longer one is replaced by its hash
    (an over-long key would fail on PostgreSQL, and with it the batch it went in)."""
    if len(key) <= KEY_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class HandlingFailed(Exception):
    """The handler of this message (or of the duplicate being waited for) raised."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to answer the platform now.

    `answered`: `text` is the answer (None: answer nothing). `deferred`: answer nothing
    now; the answer goes, or went, another way. If this request must deliver it
    (`delivers_late`): `late` is the handler's task and `claim` its row, or `rest` is
    the request's own work that outlived its deadline (its outcome says what to do).
    """

    kind: Literal["answered", "deferred"]
    text: str | None = None
    late: asyncio.Future[Reply] | None = None
    claim: Claim | None = None
    rest: asyncio.Future[Outcome] | None = None

    @property
    def delivers_late(self) -> bool:
        return self.late is not None or self.rest is not None


@dataclass(slots=True)
class RequestState:
    """One request's progress, shared by its answer (`respond_once`) and its work."""

    deadline: float
    replied: bool = False
    """The platform got its answer at the deadline: an answer found from now on goes late."""
    failing: bool = False
    """The handler raised (its claim is being released): the answer is an error."""


async def wait_local(first: asyncio.Future[Outcome | None], deadline: float) -> Outcome:
    """The outcome of the first request in this process, or nothing if not ready in time."""
    remaining = max(0.0, deadline - asyncio.get_running_loop().time())
    try:
        outcome = await asyncio.wait_for(asyncio.shield(first), remaining)
    except TimeoutError:
        return Outcome("deferred")
    if outcome is None:
        raise HandlingFailed("the first request for this message failed")
    return outcome


async def poll(
    store: InboundStore, channel: str, key: str, deadline: float, poll_interval: float
) -> Outcome | Seen | None:
    """The stored answer of a message claimed before; the row if its holder's lease
    expired (to take it over); None if the holder let it go (its handler failed).
    Still `processing` at the deadline: this goes on behind the `success` answer
    until the lease runs out, so a dead holder's message is still answered."""
    loop = asyncio.get_running_loop()
    while True:
        seen = await store.read(channel, key)
        if seen is None or seen.expired(utcnow()):
            return seen
        if seen.status == ANSWERED:
            return Outcome("answered", seen.text)
        if seen.status != PROCESSING:
            return Outcome("deferred")
        interval = poll_interval
        if loop.time() + interval > deadline:
            if seen.lease_until is None:
                return Outcome("deferred")
            interval = max(interval, LATE_POLL_INTERVAL)
        await asyncio.sleep(interval)


async def deliver_late(
    store: InboundStore, outcome: Outcome, deliver: Callable[[str], Awaitable[None]]
) -> None:
    """Await a deferred handler and hand its answer to `deliver` (once); record how it
    went. For a request that answered before its own work was done (`rest`), first
    that work: what it finds to deliver (nothing if another request handled it)."""
    if outcome.rest is not None:
        try:
            outcome = await outcome.rest
        except Exception:
            log.exception("a message answered `success` at its deadline got no answer")
            return
    if outcome.late is None:
        return
    assert outcome.claim is not None
    try:
        reply = await outcome.late
    except Exception:
        log.exception("late handler failed")
        await store.record(outcome.claim, FAILED, None)
        return
    text = reply.text or None
    status = SENT
    if text is not None:
        try:
            await deliver(text)
        except Exception:
            log.exception("late answer could not be delivered")
            status = FAILED
    await store.record(outcome.claim, status, text)


def consume(future: asyncio.Future) -> None:
    """Mark the error of work nobody awaits any more as seen (it was answered already)."""
    if not future.cancelled():
        future.exception()
