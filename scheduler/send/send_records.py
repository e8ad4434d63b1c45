"""Recording what became of each claimed message, through one `GroupWriter`.

Whatever results are waiting share one transaction (`Recorder`): the ``sent`` ones
as one bulk conditional UPDATE (`models.outbox.claims.record_sent`), the others each
by its own conditional write (`transition` under the claim the sender held), so a
message whose claim was taken over is counted as lost, never written twice.
`Pass` is one drain pass: its time, its tally (`DrainResult`), the messages not
yet handed to a provider.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import transaction
from models.group_commit import GroupWriter
from models.outbox.claims import Accepted, record_sent
from models.outbox.receipts import record_refusal
from models.outbox.states import (
    FAILED,
    GAVE_UP,
    QUEUED,
    SENDING,
    SUPPRESSED,
    UNDELIVERABLE,
    transition,
)
from models.settings.messaging import OutboxSettings
from models.tables.outbox import OutboxMessage
from scheduler.send.send_checks import Recipient, WindowUse, next_channel
from scheduler.send.send_retry import DOWN_NOTE, HELD_PREFIX, PROBE_NOTE, backoff
from scheduler.send.transports import (
    BAD_ADDRESS,
    STOPPED,
    UNREACHABLE,
    Permanent,
    Retryable,
    SendResult,
    Transport,
    Transports,
)

log = logging.getLogger("memberbot.outbox")


@dataclass
class DrainResult:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    """Retryable failures recorded (including the ones that gave up)."""
    undeliverable: int = 0
    suppressed: int = 0
    deferred: int = 0
    """Released to `queued` unsent: quiet hours, a failing channel, a re-route."""
    rerouted: int = 0
    lost: int = 0
    """The claim was taken over before the result could be recorded."""

    def add(self, other: DrainResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Pass:
    """One drain pass: its fixed time (tests) or clock, and its tally."""

    fixed_now: datetime | None
    clock: Callable[[], datetime]
    result: DrainResult = field(default_factory=DrainResult)
    unsent: dict[int, OutboxMessage] = field(default_factory=dict)
    """Claimed messages not handed to a provider yet (released if the pass is cancelled)."""
    recording: set[asyncio.Future] = field(default_factory=set)
    """Outcomes being recorded (awaited before a cancelled pass ends)."""
    window: WindowUse = field(default_factory=WindowUse)
    """Customer-service messages this pass sends, by member (`send_time_channel`)."""

    def now(self) -> datetime:
        return self.fixed_now or self.clock()


@dataclass(frozen=True, slots=True)
class _Sent:
    accepted: Accepted
    at: datetime


Op = Callable[[AsyncSession], Awaitable[object]]


def _down_marks(t) -> tuple:
    """(held, failed) conditions: messages held for a failing channel, and those that
    failed because it was down and will be tried again."""
    held = and_(t.c.status == QUEUED, t.c.reason.like(HELD_PREFIX + "%"))
    failed = and_(t.c.status == FAILED, t.c.next_attempt_at.is_not(None),
                  t.c.reason.like(f"%; {DOWN_NOTE}%"))  # fmt: skip
    return held, failed


class Recorder:
    """Writes the outcomes of a sender's passes (module docstring)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        opts: OutboxSettings,
        transports: Transports,
    ):
        self._sessions = sessions
        self._opts = opts
        self._transports = transports
        self.writer: GroupWriter[Op | _Sent, object] = GroupWriter(self._flush)

    async def _flush(self, items: list[Op | _Sent]) -> list[object]:
        """One transaction for whatever records are waiting: the `sent` ones in bulk
        (`record_sent`), every other one by its own conditional write."""
        sent = [i for i in items if isinstance(i, _Sent)]
        async with transaction(self._sessions) as session:
            moved: set[int] = set()
            if sent:
                moved = await record_sent(
                    session, accepted=[i.accepted for i in sent], now=max(i.at for i in sent)
                )
            return [
                item.accepted.message_id in moved if isinstance(item, _Sent)
                else await item(session)
                for item in items
            ]  # fmt: skip

    async def _record(self, run: Pass, m: OutboxMessage, op: Op | _Sent) -> bool:
        moved = bool(await self.writer.submit(op))
        if not moved:
            run.result.lost += 1
            log.warning("outbox message %s: claim lost before recording", m.id)
        return moved

    async def finish(
        self, run: Pass, m: OutboxMessage, status: str, reason: str, now: datetime, **fields
    ) -> None:
        """A final state (suppressed, undeliverable) under the claim the sender held."""
        run.unsent.pop(m.id, None)

        async def op(session: AsyncSession) -> bool:
            return await transition(
                session, message=m, from_status=SENDING, if_claimed_at=m.claimed_at,
                to_status=status, now=now, reason=reason, **fields,
            )  # fmt: skip

        if await self._record(run, m, op):
            if status == SUPPRESSED:
                run.result.suppressed += 1
            elif status == UNDELIVERABLE:
                run.result.undeliverable += 1

    async def release(
        self,
        messages: list[OutboxMessage],
        now: datetime,
        *,
        send_after: datetime | None = None,
        reason: str = "released unsent",
        run: Pass | None = None,
        **fields,
    ) -> None:
        """Back to `queued`, nothing sent (deferred, held, re-routed, shutting down)."""

        async def op(session: AsyncSession) -> bool:
            moved = False
            for m in messages:
                moved = await transition(
                    session, message=m, from_status=SENDING, if_claimed_at=m.claimed_at,
                    to_status=QUEUED, now=now, reason=reason,
                    send_after=send_after or m.send_after, **fields,
                ) or moved  # fmt: skip
            return moved

        if run is None:  # shutting down: write directly, the writer may be cancelled
            async with transaction(self._sessions) as session:
                await op(session)
            return
        for m in messages:
            run.unsent.pop(m.id, None)
        if await self._record(run, messages[0], op):
            run.result.deferred += len(messages)

    async def sent(
        self, run: Pass, m: OutboxMessage, transport: Transport, sent: SendResult
    ) -> None:
        """`sent` with the provider's id, in bulk with the other records waiting."""
        accepted = Accepted(
            message_id=m.id, claimed_at=m.claimed_at, via=transport.via,
            provider_id=sent.provider_id, provider_status=sent.status,
            receipts=transport.receipts,
        )  # fmt: skip
        if await self._record(run, m, _Sent(accepted, run.now())):
            run.result.sent += 1

    async def failed(
        self,
        run: Pass,
        m: OutboxMessage,
        exc: Retryable,
        *,
        probe: bool = False,
        not_before: datetime | None = None,
    ) -> None:
        """`failed`: tried again after the backoff (at least `not_before`: the provider's
        `Retry-After`, the channel's pause), or given up after `max_attempts`. A `probe`
        of a provider already known to be down spends no attempt (`scheduler.send.send_retry`)
        and goes behind the messages held meanwhile, so the next probe is another one."""
        now = run.now()
        fields: dict = {}
        if probe:
            attempts = m.attempts
            reason = f"{exc.reason}; {PROBE_NOTE}"
            next_at = max(not_before or now, now + timedelta(seconds=self._opts.retry_backoff))
            fields["send_after"] = next_at + timedelta(milliseconds=1)
        else:
            attempts = m.attempts + 1
            if attempts >= self._opts.max_attempts:
                reason, next_at = GAVE_UP, None
            else:
                reason = f"{exc.reason}; {DOWN_NOTE}" if exc.outage else exc.reason
                wait = max(backoff(attempts, self._opts.retry_backoff), exc.retry_after or 0)
                next_at = max(now + timedelta(seconds=wait), not_before or now)
        log.warning(
            "outbox message %s: %s (attempt %d%s)", m.id, exc.reason, attempts,
            ", not counted" if probe else "",
        )  # fmt: skip

        async def op(session: AsyncSession) -> bool:
            return await transition(
                session, message=m, from_status=SENDING, if_claimed_at=m.claimed_at,
                to_status=FAILED, now=now, reason=reason, attempts=attempts,
                next_attempt_at=next_at, error_code=(exc.code or "")[:32] or None, **fields,
            )  # fmt: skip

        if await self._record(run, m, op):
            run.result.failed += 1

    async def release_held(self, channel: str, now: datetime) -> None:
        """The channel answered again after failing: the messages held for it and those
        that failed meanwhile because it was down — by any sender, it is all in the database — are
        due at once instead of at the end of each sender's pause."""
        t = OutboxMessage.__table__
        held_for, failed_for = _down_marks(t)
        held = and_(held_for, t.c.send_after > now)
        probed = and_(failed_for, t.c.next_attempt_at > now)

        async def op(session: AsyncSession) -> int:
            await session.exec(
                update(t).where(t.c.channel == channel, held)
                .values(send_after=now).execution_options(synchronize_session=False)
            )  # fmt: skip
            await session.exec(
                update(t).where(t.c.channel == channel, probed)
                .values(next_attempt_at=now, send_after=now)
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            return 1

        try:
            await self.writer.submit(op)
        except Exception:  # the held messages still go at the end of their pause
            log.exception("outbox: releasing the messages held for %s failed", channel)

    async def still_down(self, channel: str) -> bool:
        """Whether a sender — any, it is all in the database — still holds a message for
        `channel`, or waits to retry one that failed because the channel was down."""
        t = OutboxMessage.__table__

        async def op(session: AsyncSession) -> bool:
            stmt = select(t.c.id).where(t.c.channel == channel, or_(*_down_marks(t))).limit(1)
            return (await session.exec(stmt)).first() is not None

        return await self.writer.submit(op)

    async def refused(
        self,
        run: Pass,
        m: OutboxMessage,
        who: Recipient,
        transport: Transport,
        exc: Permanent,
    ) -> None:
        """Re-routed when WeChat could not reach the member (`next_channel`), else
        `undeliverable` (with the member's stop or a bad number when the refusal says so)."""
        now = run.now()
        code = (exc.code or "")[:32] or None
        route = (
            next_channel(m, who, exc, now, self._transports) if exc.kind == UNREACHABLE else None
        )
        if route is not None:
            await self.release(
                [m], now, send_after=now, reason=f"rerouted to {route.via}: {exc.reason}",
                run=run, channel=route.channel, via=route.via, address=route.address,
                attempts=m.attempts + 1, error_code=code,
            )  # fmt: skip
            run.result.rerouted += 1
            return

        async def op(session: AsyncSession) -> bool:
            moved = await transition(
                session, message=m, from_status=SENDING, if_claimed_at=m.claimed_at,
                to_status=UNDELIVERABLE, now=now, reason=exc.reason,
                attempts=m.attempts + 1, next_attempt_at=None, error_code=code,
            )  # fmt: skip
            if moved and exc.kind in (STOPPED, BAD_ADDRESS):
                source = f"{transport.via} {exc.code}" if exc.code else transport.via
                await record_refusal(session, message=m, kind=exc.kind, source=source, now=now)
            return moved

        if await self._record(run, m, op):
            run.result.undeliverable += 1
