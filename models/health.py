"""Operational reads for `GET /metrics` (`bot.metrics`): the outbox, the sends and the
daily runs as the database has them, so every replica reports the same numbers.

Each is one aggregate statement; the outbox ones use its `(status, send_after)` index or
read the table once. Suppression reasons are cut at their first ":" so the label set
stays small ("stopped", "weekly cap", "rule broken: …" → "rule broken").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.inbox import ANSWERED, OPEN
from models.outbox.states import FAILED, QUEUED, SUPPRESSED, UNDELIVERABLE
from models.tables.inbox import Conversation
from models.tables.outbox import OutboxMessage, PlanRun


@dataclass(frozen=True)
class LastRun:
    day: date
    started_at: datetime
    finished_at: datetime | None
    planned: int
    suppressed: int


async def outbox_counts(session: AsyncSession) -> list[tuple[str, str, int]]:
    """(status, kind, messages) for every pair present."""
    m = OutboxMessage
    stmt = select(m.status, m.kind, func.count()).group_by(m.status, m.kind)
    return [(s, k, n) for s, k, n in (await session.exec(stmt)).all()]


async def oldest_due(session: AsyncSession, now: datetime) -> datetime | None:
    """The `send_after` of the oldest queued message that is due (None: nothing waits)."""
    m = OutboxMessage
    stmt = select(func.min(m.send_after)).where(m.status == QUEUED, m.send_after <= now)
    return (await session.exec(stmt)).one()


async def send_totals(session: AsyncSession) -> list[tuple[str, int]]:
    """(provider, attempts) summed over every message (`via`: twilio, customer_service, …)."""
    m = OutboxMessage
    stmt = select(m.via, func.sum(m.attempts)).where(m.attempts > 0).group_by(m.via)
    return [(via or "none", int(n or 0)) for via, n in (await session.exec(stmt)).all()]


async def send_failures(session: AsyncSession) -> list[tuple[str, str, int]]:
    """(provider, error code, messages) of the messages given up or undeliverable."""
    m = OutboxMessage
    stmt = (
        select(m.via, m.error_code, func.count())
        .where(m.status.in_((FAILED, UNDELIVERABLE)))
        .group_by(m.via, m.error_code)
    )
    rows = (await session.exec(stmt)).all()
    return [(via or "none", code or "none", n) for via, code, n in rows]


async def suppressed_on(session: AsyncSession, day: date) -> dict[str, int]:
    """Messages planned for `day` and suppressed, by the reason's first part."""
    m = OutboxMessage
    stmt = (
        select(m.reason, func.count())
        .where(m.planned_on == day, m.status == SUPPRESSED)
        .group_by(m.reason)
    )
    counts: dict[str, int] = {}
    for reason, n in (await session.exec(stmt)).all():
        key = (reason or "none").split(":", 1)[0].strip()[:40] or "none"
        counts[key] = counts.get(key, 0) + n
    return counts


async def last_runs(session: AsyncSession) -> tuple[LastRun | None, LastRun | None]:
    """The newest daily run, and the newest one that finished."""
    newest = (await session.exec(select(PlanRun).order_by(PlanRun.day.desc()).limit(1))).first()
    done = (
        await session.exec(
            select(PlanRun)
            .where(PlanRun.finished_at.is_not(None))
            .order_by(PlanRun.day.desc())
            .limit(1)
        )
    ).first()

    def view(run: PlanRun | None) -> LastRun | None:
        if run is None:
            return None
        return LastRun(run.day, run.started_at, run.finished_at, run.planned, run.suppressed)

    return view(newest), view(done)


async def conversations(session: AsyncSession) -> list[tuple[str, int]]:
    """(status, conversations) of the hand-offs not closed: waiting for an answer, answered."""
    c = Conversation
    stmt = select(c.status, func.count()).where(c.status.in_((OPEN, ANSWERED))).group_by(c.status)
    counts = dict((await session.exec(stmt)).all())
    return [(status, counts.get(status, 0)) for status in (OPEN, ANSWERED)]
