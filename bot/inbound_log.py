"""Exactly one effect per inbound message, the same answer for every retry, and a deadline.

MESSAGING.md "WeChat": WeChat waits 5 s for the passive reply, then retries (3 tries
in all); "a retried message has exactly one effect and gets the same answer";
"when an answer needs longer, reply `success` and send the answer through the
customer-service API". Twilio wants an answer within 15 s and may deliver twice.

How (`InboundLog.respond_once`):

1. The first request for a key inserts an `inbound_messages` row as `processing`
   (INSERT … ON CONFLICT DO NOTHING, committed at once) with a lease: the request's
   deadline plus `lease_margin`. Only the request whose insert took effect runs the
   handler; so a message has one effect even when its retries land on other
   processes, because the state is in the database.
2. It waits for the handler until the deadline. In time: the answer is stored
   (`answered`) and returned. Too late: the row becomes `deferred`, the caller answers
   the platform at once ("success" / empty TwiML) and delivers the answer itself when
   the handler finishes (`bot.inbound_outcome.deliver_late`), ending in `sent` or `failed`.
   The deadline bounds the whole request, not only the handler: when the database
   stalls (a held lock, a slow disk) and the claim or a record is not done by then,
   the caller answers "success" all the same and the request's work goes on behind
   it (`Outcome.rest`); if that work turns out to hold the claim, the handler's answer
   is delivered late as above, else (another request has the message) nothing is.
   At most `max_handlers` handlers run at once (`bot.handler_slots`); a message
   finding none free waits for one until its deadline, then goes the late way.
3. Any other request for the key (a retry, a duplicate, another replica) waits —
   up to its own deadline — for the row to leave `processing`, then gives the stored
   answer (`answered`) or nothing (`deferred`: the answer goes or went by the API,
   so a retry never causes a second send). A duplicate within one process waits on
   the first request's future; across processes it polls the row, and goes on
   polling behind its `success` until the holder's lease runs out (step 4).
4. If the handler raises, the claim is released (the row deleted; retried on a fresh
   connection): duplicates in the process fail too, a copy polling elsewhere claims
   the message afresh, and so does the platform's next retry. If the release fails
   or the holder dies, the row stays `processing` until its lease expires; a copy
   that then finds it takes it over (a conditional UPDATE giving it a new lease: one
   copy wins) and runs the handler. A live holder leaves `processing` by its deadline,
   before its lease ends; each of its writes names its lease, so a holder that was
   taken over changes nothing any more (`bot.inbound_store`).
5. A message that changes nothing may skip the claim (`quick=`, e.g. a bound member's
   "积分", `bot.bot.MemberBot.quick`): the conversation's one read answers it and also
   shows the key is not in the log (else steps 1–3, so a retry still gets the stored
   answer); the answer is stored behind the reply as an `answered` row (INSERT … ON
   CONFLICT DO NOTHING: a copy that got there first keeps its row). A copy arriving
   before that row lands answers from the same data again: no second effect, since
   the only write is the forward-only `last_inbound_at` stamp.

The rows, their statements and when each is committed: `bot.inbound_store`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from bot import eager
from bot.conversation import Reply
from bot.handler_slots import HOLD_MAX, MAX_HANDLERS, HandlerSlots
from bot.inbound_outcome import (
    HandlingFailed,
    Outcome,
    RequestState,
    consume,
    poll,
    wait_local,
)
from bot.inbound_store import (
    ANSWERED,
    ANSWERED_ROW,
    DEFERRED,
    Claim,
    InboundStore,
)
from models import rawdb
from models.types import utcnow

log = logging.getLogger("memberbot.inbound")

LEASE_MARGIN = 4.0
"""Seconds a claim's lease lasts beyond the deadline of the request that took it."""


class InboundLog:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        poll_interval: float = 0.05,
        lease_margin: float = LEASE_MARGIN,
        max_handlers: int = MAX_HANDLERS,
        handler_hold_max: float = HOLD_MAX,
    ):
        self._engine = engine
        self.store = InboundStore(engine)
        """The rows (`deliver_late` records through it)."""
        self._raw = self.store.raw
        self.poll_interval = poll_interval
        self.lease_margin = lease_margin
        self._handlers = HandlerSlots(max_handlers, hold_max=handler_hold_max)
        """Handlers under way at once: beyond that, messages wait for a slot (at most
        until their deadline, then they go the late way), so that however many requests
        come at once, the event loop's turns stay short and every deadline is kept."""
        self._local: dict[tuple[str, str], asyncio.Future[Outcome | None]] = {}
        self._deadlines: dict[tuple[str, str], float] = {}
        self._background: set[asyncio.Future] = set()
        self.waiting = 0
        """Duplicates waiting for the first request's answer right now (in this process)."""

    # ------------------------------------------------------------------ the protocol

    async def respond_once(
        self,
        channel: str,
        key: str,
        handler: Callable[[], Awaitable[Reply]],
        *,
        deadline: float,
        quick: Callable[[], Awaitable[Reply | None]] | None = None,
        answered: bool = False,
    ) -> Outcome:
        """Run `handler` once per (channel, key) and say what to answer now.

        `deadline` is a `loop.time()` by which this request answers, whatever the database
        does: work not done by then (the claim, a stored record, the handler) goes on
        behind the answer, which is then `deferred` (`delivers_late`). Raises
        HandlingFailed if the handler (this one's or the awaited first one's) raised.
        `quick`, when given, is tried first: a reply from it (a message that changes
        nothing, read in a snapshot without `key`) is the answer, stored behind it, with
        no claim; None goes the claimed way. `answered`: the platform already has its
        answer (`success`), so whatever is found goes late, as after a missed deadline.
        """
        request = RequestState(deadline, replied=answered)
        work = eager.start(self._work(channel, key, handler, quick, request))
        if not answered and await eager.finished_by(work, deadline):
            return work.result()
        request.replied = True
        if request.failing:
            work.add_done_callback(consume)
            raise HandlingFailed(f"{channel} {key}")
        return Outcome("deferred", rest=work)

    async def _work(
        self,
        channel: str,
        key: str,
        handler: Callable[[], Awaitable[Reply]],
        quick: Callable[[], Awaitable[Reply | None]] | None,
        request: RequestState,
    ) -> Outcome:
        await rawdb.pace(self._raw)
        first = self._local.get((channel, key))
        if first is None and quick is not None:
            reply = await quick()
            if reply is not None and not request.replied:
                text = reply.text or None
                now = rawdb.sql_time(utcnow(), self._raw.dialect)
                self._raw.defer(ANSWERED_ROW, (channel, key, ANSWERED, text, now, now), key)
                return Outcome("answered", text)
            # Too late for the reply (so the claimed way, answered late), or a copy
            # went the claimed way meanwhile.
            first = self._local.get((channel, key))
        if first is not None:  # a duplicate within this process: wait for the first one
            self.waiting += 1
            try:
                return await wait_local(first, request.deadline)
            finally:
                self.waiting -= 1
        mine: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._local[(channel, key)] = mine
        self._deadlines[(channel, key)] = request.deadline
        try:
            outcome = await self._respond(channel, key, handler, request)
            mine.set_result(Outcome(outcome.kind, outcome.text))
            return outcome
        finally:
            if not mine.done():
                mine.set_result(None)  # failed: the duplicates fail too
            del self._local[(channel, key)]
            del self._deadlines[(channel, key)]

    async def _respond(
        self, channel: str, key: str, handler: Callable[[], Awaitable[Reply]], request: RequestState
    ) -> Outcome:
        claim = await self._claim(channel, key)
        while claim is None:  # seen before, or being handled by another process
            self.waiting += 1
            try:
                seen = await poll(self.store, channel, key, request.deadline, self.poll_interval)
            finally:
                self.waiting -= 1
            if isinstance(seen, Outcome):
                return seen
            if seen is None:  # released: its handler failed; this copy starts afresh
                claim = await self._claim(channel, key)
                continue
            claim = await self.store.take_over(seen, self._lease_until(channel, key))
            if claim is not None:
                log.warning("took over %s %s: its holder's lease expired", channel, key)
        if self._handlers.full():  # as many handlers under way as the loop can serve
            queued = asyncio.ensure_future(self._handlers.acquire())
            if request.replied or not await eager.finished_by(queued, request.deadline):
                return await self._start_late(claim, handler, queued)
        else:
            await self._handlers.acquire()  # free: no wait
        task = self._handlers.start(handler)
        finished = await eager.finished_by(task, request.deadline)
        if request.replied or not finished:
            await self.store.record(claim, DEFERRED, None)
            return Outcome("deferred", late=task, claim=claim)
        if task.exception() is not None:
            request.failing = True
            await self.store.release(claim)
            raise HandlingFailed(f"{channel} {key}") from task.exception()
        text = task.result().text or None
        self.store.record_later(claim, ANSWERED, text)
        return Outcome("answered", text)

    async def _start_late(
        self, claim: Claim, handler: Callable[[], Awaitable[Reply]], queued: asyncio.Future
    ) -> Outcome:
        """No handler slot came free by the deadline (an overload): the message goes the
        late way — marked `deferred` first, so that a retry meanwhile knows — and its
        handler runs when a slot is free."""
        try:
            await self.store.record(claim, DEFERRED, None)
        except BaseException:
            self._handlers.give_back_when_acquired(queued)
            raise
        await queued
        return Outcome("deferred", late=self._handlers.start(handler), claim=claim)

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run background work (late deliveries) that `aclose` waits for."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, within: float | None = None) -> set[asyncio.Future]:
        """Wait until the late deliveries under way are done and the answers stored; the
        deliveries still running after `within` seconds are returned."""
        pending: set[asyncio.Future] = set()
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=within)
        await self.settle()
        return pending

    async def settle(self) -> None:
        """Wait until every answer given so far is stored (they are written behind)."""
        await self._raw.settle()

    async def aclose(self, grace: float = 10.0) -> None:
        """On shutdown: let late deliveries finish (up to `grace` s), then cancel the rest;
        store the answers still queued."""
        pending = await self.drain(grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.settle()

    # ------------------------------------------------------------------ the rows

    async def _claim(self, channel: str, key: str) -> Claim | None:
        """Insert the `processing` row of a key, committed, with its lease; its claim, or
        None if the key was seen before."""
        return await self.store.claim(channel, key, self._lease_until(channel, key))

    def _lease_until(self, channel: str, key: str) -> datetime:
        """A claim lasts until the deadline of the request taking it, plus `lease_margin`:
        a live holder has left `processing` by then (answered or deferred)."""
        deadline = self._deadlines.get((channel, key))
        left = 0.0 if deadline is None else deadline - asyncio.get_running_loop().time()
        return utcnow() + timedelta(seconds=max(0.0, left) + self.lease_margin)
