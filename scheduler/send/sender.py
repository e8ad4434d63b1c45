"""The outbox drain: claim due messages, re-check them, send within the rate, record.

MESSAGING.md "SMS (Twilio)", "States of an outgoing message", "Timing", "Channels".
One pass (`Sender.drain_once`):

1. Claim (one transaction, committed before any sending): up to `outbox.batch_size`
   due messages per channel this sender serves, never more than the channel's rate
   lets out in half of `outbox.claim_timeout`, nor more than its `concurrency` calls
   of up to `call_timeout` seconds can get through in that time (so a waiting claim
   is never taken for a dead one). The members and identities the re-checks need
   are read in the same transaction.
2. Re-check each message at send time, in this order: the member stopped since
   planning → `suppressed` "stopped"; its SMS number marked bad since → `suppressed`
   "bad_number"; a greeting whose brand day has passed → `suppressed` "too_late"
   (greetings are never sent late on another day); outside quiet hours now
   (`scheduler.policy.next_allowed`: send window ∩ the member's preferred time) →
   back to `queued` with `send_after` = the next allowed moment — or "too_late" when a
   greeting's next allowed moment is on another day. Then the channel is chosen again
   with the customer-service window as it is now (`send_checks.send_time_channel`):
   a different choice goes back to `queued` on the new channel (or `suppressed`).
3. Send through the channel's `SharedRateLimiter` (`outbox.rate_sms`, `rate_wechat`
   messages/second, held across every sender on the database), at most
   `outbox.concurrency` calls at once per channel. A message whose claim could run
   out before the call ends is released unsent, and the call is cut off before the
   claim expires.
4. Record (no transaction is open during the network call):
   - accepted → `sent` with the provider id (+ an SMS receipt that arrived before the
     call returned is applied at once: `models.outbox.receipts.apply_receipt`);
   - `Retryable` → `failed`, attempts + 1, `next_attempt_at` = now + `retry_backoff` ×
     2^(attempts − 1), at most 300 s (or the provider's `Retry-After`, if longer);
     after `max_attempts` → `failed` with no next try, reason "gave up". The channel
     pauses for the same backoff (a circuit breaker, `scheduler.send.send_retry`): while a
     provider is down one message probes it and the others wait, `queued`; a probe of
     a provider already down spends no attempt, so an outage never makes a message
     give up. A successful probe makes everything held for the channel due at once;
   - `Permanent` → `undeliverable` with the reason; 21610 also records the member's
     stop (channel "provider", source "twilio 21610"), 21211 / 21614 mark the number
     bad (never retried). WeChat "cannot reach" refusals (45015 / 45047 window closed,
     43004 not following, no template) are re-routed by `policy.choose_channel` with
     WeChat ruled out as it failed: customer service → a template message for a
     service notice when one is configured, else SMS; template → SMS. Nothing was
     delivered, so this is still one channel per message; a message is re-routed at
     most twice and never back to WeChat. No other channel left → `undeliverable`.

Records go through one `GroupWriter` (models/group_commit.py): whatever results are waiting
share one transaction — the `sent` ones as one bulk conditional UPDATE
(`models.outbox.claims.record_sent`), the others each by its own conditional write —
so under load the cost per message is a fraction of a transaction, and when idle a lone
result is committed at once.

`run()` repeats passes (at once while there is work, else every `outbox.poll_interval`
seconds) and stops cleanly when cancelled: answers already received are still recorded,
claimed messages not yet handed to a provider are released to `queued`, and a call
under way is the at-least-once boundary of `models.outbox.claims` (its claim expires
and it is sent again). The semaphore is given back as soon as the provider answered, so a
busy database never holds up the sending.

The send-time rules and the re-route are in `scheduler.send.send_checks`, the backoff and
the circuit breaker in `scheduler.send.send_retry`, the recording in `scheduler.send.send_records`;
this module runs the passes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from math import ceil

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from models.outbox.claims import claim
from models.outbox.states import SUPPRESSED
from models.settings import Settings
from models.tables.outbox import OutboxMessage
from models.types import utcnow
from scheduler.policy import Suppressed
from scheduler.send.ratelimit import RateLimiter, SharedRateLimiter
from scheduler.send.send_checks import (
    Recipient,
    Suppress,
    read_recipients,
    send_time_channel,
    send_time_verdict,
)
from scheduler.send.send_records import DrainResult, Pass, Recorder
from scheduler.send.send_retry import HELD_PREFIX, ChannelBreaker
from scheduler.send.transports import (
    Permanent,
    Retryable,
    Transport,
    Transports,
)

log = logging.getLogger("memberbot.outbox")

CALL_TIMEOUT = 10.0
"""Seconds one provider call may take (the transports' own timeout): claims are sized
by it (`Sender._claim_limit`)."""


class Sender:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        transports: Transports,
        clock: Callable[[], datetime] = utcnow,
        limiters: Mapping[str, RateLimiter | SharedRateLimiter] | None = None,
        call_timeout: float = CALL_TIMEOUT,
    ):
        self._settings = settings
        self._opts = settings.outbox
        self._tz = settings.brand.tz
        self._transports = transports
        self._clock = clock
        self._limiters = dict(limiters or {})
        for channel, rate in (
            ("sms", self._opts.rate_sms),
            ("wechat", self._opts.rate_wechat),
            ("console", 0),
        ):
            self._limiters.setdefault(
                channel, SharedRateLimiter(rate, sessions=sessions, channel=channel)
            )
        self._call_timeout = call_timeout
        # One concurrency limit per channel: a provider that hangs holds up only itself.
        self._semaphores = {
            ch: asyncio.Semaphore(self._opts.concurrency) for ch in ("sms", "wechat", "console")
        }
        self._rec = Recorder(sessions=sessions, opts=self._opts, transports=transports)
        self._breaker = ChannelBreaker(self._opts.retry_backoff)

    def breaker_states(self) -> list[tuple[str, bool]]:
        """(channel, open?) for every channel the sender sends by (`GET /metrics`)."""
        return [(ch, self._breaker.is_down(ch)) for ch in sorted(self._transports.channels())]

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Drain until cancelled: at once again while passes find work, else every
        `outbox.poll_interval` seconds. A failing pass (database down) is logged and
        retried after the interval."""
        while True:
            try:
                result = await self.drain_once()
            except Exception:
                log.exception("outbox pass failed")
                result = DrainResult()
            if result.claimed == 0:
                await asyncio.sleep(self._opts.poll_interval)

    async def drain_once(self, now: datetime | None = None) -> DrainResult:
        """One pass over the due messages. `now` fixes the time of the whole pass (tests);
        by default each step reads the clock."""
        run = Pass(fixed_now=now, clock=self._clock)
        start = run.now()
        channels = {
            ch for ch in self._transports.channels() if not self._breaker.is_paused(ch, start)
        }
        if not channels:
            return run.result
        claimed, recipients = await self._rec.writer.submit(
            lambda s: self._claim(s, now=start, channels=channels)
        )
        run.result.claimed = len(claimed)
        await self._close_idle_breakers(channels, claimed)
        run.unsent = {m.id: m for m in claimed}
        try:
            outcomes = await asyncio.gather(
                *(self._one(run, m, recipients.get(m.member_id)) for m in claimed),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # Stopping: what was sent is still recorded, what was not is given back.
            pending = [*run.recording]
            if run.unsent:
                pending.append(self._rec.release(list(run.unsent.values()), run.now()))
            if pending:
                await asyncio.shield(asyncio.gather(*pending, return_exceptions=True))
            raise
        for m, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("outbox message %s: %r (left to its claim timeout)", m.id, outcome)
        return run.result

    async def _close_idle_breakers(self, channels: set[str], claimed: list[OutboxMessage]) -> None:
        """A channel this sender counts as down, its pause over and nothing claimed for
        it: up again once no sender holds or retries anything for it (another sender's
        probe got through) — else the breaker, and `memberbot_breaker_open`, would stay
        open until this sender's next message on the channel, hours later at night."""
        busy = {m.channel for m in claimed}
        for channel in sorted(channels - busy):
            if self._breaker.is_down(channel) and not await self._rec.still_down(channel):
                self._breaker.answered(channel)

    # ------------------------------------------------------------------ claiming

    def _claim_limit(self, channel: str) -> int:
        """No more than can be sent in half the claim timeout: at the channel's rate, and
        with its `concurrency` calls at once each taking up to `call_timeout`."""
        rate = self._limiters[channel].rate if channel in self._limiters else None
        half = self._opts.claim_timeout / 2
        limit = self._opts.batch_size
        if rate:
            limit = min(limit, max(1, ceil(rate * half)))
        if channel != "console":
            limit = min(limit, max(1, int(self._opts.concurrency * half / self._call_timeout)))
        return limit

    def _time_left(self, m: OutboxMessage, now: datetime) -> float:
        """Seconds a call to the provider may still take while the claim on `m` surely
        holds: what is left of `claim_timeout`, less a margin for the recording."""
        end = m.claimed_at + timedelta(seconds=self._opts.claim_timeout)
        return (end - now).total_seconds() - max(1.0, self._opts.claim_timeout / 10)

    async def _claim(
        self, session: AsyncSession, *, now: datetime, channels: set[str]
    ) -> tuple[list[OutboxMessage], dict[int, Recipient]]:
        claimed: list[OutboxMessage] = []
        for channel in sorted(channels):
            claimed += await claim(
                session,
                now=now,
                limit=self._claim_limit(channel),
                channel=channel,
                max_attempts=self._opts.max_attempts,
                claim_timeout=self._opts.claim_timeout,
            )
        return claimed, await read_recipients(session, claimed)

    # ------------------------------------------------------------------ one message

    async def _one(self, run: Pass, m: OutboxMessage, who: Recipient | None) -> None:
        if who is None:  # the member row is gone: nothing to send to
            await self._rec.finish(run, m, SUPPRESSED, "no_member", run.now())
            return
        if await self._recheck(run, m, who):
            return
        now = run.now()
        choice = send_time_channel(m, who, now=now, transports=self._transports, use=run.window)
        if isinstance(choice, Suppressed):
            await self._rec.finish(run, m, SUPPRESSED, choice.reason, now)
            return
        if choice is not None:  # the window opened or closed since planning
            await self._rec.release(
                [m], now, send_after=now, reason=f"channel at send time: {choice.via}",
                run=run, channel=choice.channel, via=choice.via, address=choice.address,
            )  # fmt: skip
            return
        transport = self._transports.for_message(m)
        if transport is None:  # e.g. WeChat switched off after planning: retried, then given up
            run.unsent.pop(m.id, None)
            await self._rec.failed(run, m, Retryable(f"no sender for {m.channel}/{m.via}"))
            return
        # The semaphore bounds the provider calls under way; the result is recorded after
        # the slot is given back, so a busy writer never holds up the sending.
        async with self._semaphores[transport.channel]:
            record = await self._attempt(run, m, who, transport)
        if record is not None:  # the provider answered: record it even if we are stopping
            recording = asyncio.ensure_future(record())
            run.recording.add(recording)
            await asyncio.shield(recording)

    async def _attempt(
        self, run: Pass, m: OutboxMessage, who: Recipient, transport: Transport
    ) -> Callable[[], Awaitable[None]] | None:
        """Wait for the rate, re-check, call the provider; return how to record the outcome
        (None when the message was settled without a call)."""
        await self._limiters[transport.channel].acquire()
        now = run.now()
        if await self._recheck(run, m, who):
            return None
        channel = transport.channel
        until = self._breaker.paused_until(channel, now)
        if until is not None:
            reason = f"{HELD_PREFIX}{m.channel} failing"
            return partial(self._rec.release, [m], now, send_after=until, reason=reason, run=run)
        left = self._time_left(m, now)
        if left < min(self._call_timeout, self._opts.claim_timeout / 4):
            # Waited so long for the rate or a free slot that the call could outlast the
            # claim: give it back rather than risk a second sender taking it over mid-call.
            return partial(self._rec.release, [m], now, reason="claim running out", run=run)
        probe = self._breaker.is_down(channel)
        if probe and not self._breaker.start_probe(channel):
            # One probe at a time: this one waits for its outcome (a success releases it).
            until = now + timedelta(seconds=self._opts.retry_backoff)
            reason = f"{HELD_PREFIX}{m.channel} failing"
            return partial(self._rec.release, [m], now, send_after=until, reason=reason, run=run)
        run.unsent.pop(m.id, None)
        try:
            async with asyncio.timeout(left):
                sent = await transport.send(m)
        except Retryable as exc:
            return self._failed(run, m, channel, exc, probe=probe and exc.outage)
        except TimeoutError:
            exc = Retryable("no answer before the claim ran out", outage=True)
            return self._failed(run, m, channel, exc, probe=probe)
        except Permanent as exc:
            return self._up(
                channel, run.now(), partial(self._rec.refused, run, m, who, transport, exc)
            )
        except Exception as exc:
            log.exception("outbox message %s: unexpected error from %s", m.id, transport.via)
            exc = Retryable(f"error: {type(exc).__name__}")
            return self._failed(run, m, channel, exc, probe=False)
        finally:
            if probe:
                self._breaker.end_probe(channel)
        return self._up(channel, run.now(), partial(self._rec.sent, run, m, transport, sent))

    def _failed(
        self, run: Pass, m: OutboxMessage, channel: str, exc: Retryable, *, probe: bool
    ) -> Callable[[], Awaitable[None]]:
        now = run.now()
        self._breaker.failed(channel, now, retry_after=exc.retry_after)
        until = self._breaker.paused_until(channel, now)
        record = partial(self._rec.failed, run, m, exc, probe=probe, not_before=until)
        hold = getattr(self._limiters.get(channel), "hold", None)
        if not exc.retry_after or hold is None:
            return record

        async def hold_and_record() -> None:  # every sender waits for the Retry-After
            try:
                await hold(exc.retry_after)
            except Exception:
                log.exception("outbox: sharing the Retry-After of %s failed", channel)
            await record()

        return hold_and_record

    def _up(
        self, channel: str, now: datetime, record: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        """The provider answered: `record` it, and after a failure release what was
        held for the channel (it may all go now)."""
        if not self._breaker.answered(channel):
            return record

        async def record_and_release() -> None:
            await record()
            await self._rec.release_held(channel, now)

        return record_and_release

    async def _recheck(self, run: Pass, m: OutboxMessage, who: Recipient) -> bool:
        """Apply the send-time rules (module docstring, step 2; `send_time_verdict`);
        True if the message was settled (suppressed or deferred) and must not be sent now."""
        now = run.now()
        verdict = send_time_verdict(
            m, who, now=now, tz=self._tz, send_window=self._settings.messaging.send_window
        )
        if verdict is None:
            return False
        if isinstance(verdict, Suppress):
            await self._rec.finish(run, m, SUPPRESSED, verdict.reason, now)
        else:
            await self._rec.release(
                [m], now, send_after=verdict.until, reason="quiet hours", run=run
            )
        return True


async def drain_until_idle(
    sender: Sender, *, now: datetime | None = None, max_passes: int = 1000
) -> DrainResult:
    """Passes until one claims nothing (or `max_passes`): the total of all passes."""
    total = DrainResult()
    for _ in range(max_passes):
        result = await sender.drain_once(now)
        total.add(result)
        if result.claimed == 0:
            break
    return total
