"""Applying validated records in batches (`Batcher`).

Speed: rows are applied in batches of `batch_size` per transaction. Before a
batch, a few queries settle what needs no domain call: members whose stored
values already match are "unchanged", receipts already recorded are "already",
unknown store/assistant/card codes are rejected. The rest runs optimistically in
one transaction with no savepoints; if anything in it fails, the batch is rolled
back and re-run with one SAVEPOINT per record (a record that fails half-way
leaves no partial writes and the others still land), and if even that fails,
one transaction per record.

With a `bulk` step (`memberbot import` without `--one-by-one`), the batch is first
recorded set-based (`models.bulk`): the records it leaves out run one by one after it,
in the same transaction, each in a SAVEPOINT (a failing one is rejected alone). If the
transaction fails, or replayed from a state that turned out stale, the batch is redone
in bulk alone once the batch before it has settled, and if that fails too, as above.
On PostgreSQL (`overlap`) two bulk batches are in flight (`models.bulk.pipeline`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from tqdm import tqdm

from bot.csvio.report import PHONE_COLUMNS, ImportSummary, validation_reason
from models.bulk.pipeline import Stale, Turn
from models.bulk.stats import Statistics
from models.db import is_postgres
from models.errors import DomainError
from models.phone import mask_phone

log = logging.getLogger("memberbot.csv")

DEFAULT_BATCH = 500


@dataclass
class Job:
    line: int
    rows: int
    data: Any
    """A validated MemberIn or PurchaseIn."""
    outcome: str | None = None
    rejected: str | None = None
    new: bool = False
    """The pre-check saw no stored record for it (a member import can skip its comparison)."""


Apply = Callable[[AsyncSession, Job], Awaitable[str]]


def _fatal(exc: BaseException) -> bool:
    """Errors that mean the database itself is gone: stop the import instead of rejecting rows."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, InterfaceError | OSError)


def _reason(exc: Exception, data: Any = None) -> str:
    """A rejection reason; a domain error naming a field gets the offending value added."""
    if isinstance(exc, DomainError):
        value = getattr(data, exc.field, None) if exc.field and data is not None else None
        if isinstance(value, str) and value and value not in exc.message:
            if exc.field in PHONE_COLUMNS:
                value = mask_phone(value)
            return f"{exc.message} {value!r}"
        return exc.message
    if isinstance(exc, ValidationError):
        return validation_reason(exc)
    log.warning("unexpected %s while importing: %s", type(exc).__name__, exc)
    return f"unexpected error: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _attempt(
    sessions: async_sessionmaker[AsyncSession], jobs: list[Job], apply: Apply, *, savepoints: bool
) -> bool:
    """Apply `jobs` in one transaction. Without savepoints any failure rolls the whole
    transaction back (returns False); with them a failing job is rejected alone."""
    for job in jobs:
        job.outcome = job.rejected = None
    try:
        async with sessions() as session, session.begin():
            for job in jobs:
                if not savepoints:
                    job.outcome = await apply(session, job)
                    continue
                await _apply_saved(session, job, apply)
        return True
    except Exception as exc:
        if _fatal(exc):
            raise
        log.debug("transaction of %d records failed: %s", len(jobs), exc)
        for job in jobs:
            job.outcome = None
            job.rejected = _reason(exc, job.data) if len(jobs) == 1 else None
        return False


async def _apply_saved(session: AsyncSession, job: Job, apply: Apply) -> None:
    """`job` applied under a savepoint: a refusal rolls back that job only and is kept as
    its rejection."""
    try:
        async with session.begin_nested():
            job.outcome = await apply(session, job)
    except Exception as exc:
        if _fatal(exc):
            raise
        job.outcome, job.rejected = None, _reason(exc, job.data)


async def _apply_batch(
    sessions: async_sessionmaker[AsyncSession], jobs: list[Job], apply: Apply
) -> None:
    """One transaction for the batch; if anything fails, redo it with a savepoint per job;
    if even that transaction fails, one transaction per job."""
    if await _attempt(sessions, jobs, apply, savepoints=False):
        return
    if await _attempt(sessions, jobs, apply, savepoints=True):
        return
    for job in jobs:
        await _attempt(sessions, [job], apply, savepoints=False)


async def _bulk_batch(
    sessions: async_sessionmaker[AsyncSession],
    jobs: list[Job],
    bulk: Bulk,
    apply: Apply,
    turn: Turn | None,
) -> bool | None:
    """`bulk` settles what it can of `jobs` (setting their outcome) and returns the rest,
    applied one by one with a savepoint each, in the same transaction. False (and no
    outcome kept) if the transaction failed; None if it replayed from a state that turned
    out stale (`models.bulk.pipeline.Stale`: replay it again)."""
    for job in jobs:
        job.outcome = job.rejected = None
    try:
        async with sessions() as session, session.begin():
            for job in await bulk(session, jobs, turn):
                await _apply_saved(session, job, apply)
        return True
    except Exception as exc:
        if _fatal(exc):
            raise
        for job in jobs:
            job.outcome = job.rejected = None
        if isinstance(exc, Stale):
            log.info("bulk batch of %d records replayed again: %s", len(jobs), exc)
            return None
        log.warning("bulk batch of %d records failed, redone alone: %s", len(jobs), exc)
        return False


Prefilter = Callable[[list[Job]], Awaitable[None]]
Bulk = Callable[[AsyncSession, list[Job], Turn | None], Awaitable[list[Job]]]


class Batcher:
    """Collects validated jobs and applies them `size` at a time, recording the outcomes.

    `prefilter` may settle jobs before the transaction (set `outcome` or `rejected`):
    one query for the whole batch instead of one domain call per record. `bulk` records
    the rest set-based (see the module docstring). On PostgreSQL two bulk batches are in
    flight (`overlap`): the next one reads and replays while the previous one is written
    (`models.bulk.pipeline`); and the planner's statistics of `tables` are kept in step
    with the records written (`models.bulk.stats`)."""

    def __init__(
        self,
        sessions,
        apply: Apply,
        summary: ImportSummary,
        size: int,
        prefilter: Prefilter,
        bulk: Bulk | None = None,
        *,
        tables: tuple[str, ...] = (),
    ):
        self.sessions, self.apply, self.summary, self.size = sessions, apply, summary, size
        self.prefilter, self.bulk = prefilter, bulk
        pg = is_postgres(sessions.kw["bind"])
        self.overlap = pg and bulk is not None
        self.statistics = Statistics(sessions, tables) if pg and tables else None
        self.jobs: list[Job] = []
        self.on_done: Callable[[Job], None] | None = None
        self._running: list[asyncio.Task] = []
        self._turn: Turn | None = None
        self.carried = 0
        """Members replayed from the previous batch's state (`Turn.uses`), all batches."""
        self.replayed_again = 0
        """Batches replayed again because that state was stale."""

    async def add(self, job: Job) -> None:
        """Queue `job`. A full batch is applied in the background while the next one is
        read and validated (the database works meanwhile); batches settle in file order,
        each written after the previous one has committed."""
        self.jobs.append(job)
        if len(self.jobs) >= self.size:
            jobs, self.jobs = self.jobs, []
            await self._wait(keep=1 if self.overlap else 0)
            self._start(jobs)
        elif self._running and len(self.jobs) % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let the batch being applied move on

    async def flush(self) -> None:
        """Apply what is queued; when it returns, every job added so far is settled."""
        if self.jobs:
            jobs, self.jobs = self.jobs, []
            await self._wait(keep=1 if self.overlap else 0)
            self._start(jobs)
        await self._wait(keep=0)

    def _start(self, jobs: list[Job]) -> None:
        turn = None
        if self.overlap:
            turn = self._turn = Turn(self._turn)
        self._running.append(asyncio.create_task(self._apply(jobs, turn)))

    async def _wait(self, keep: int) -> None:
        """Until at most `keep` batches are in flight; a batch's error is raised once the
        others are stopped."""
        while len(self._running) > keep:
            task = self._running.pop(0)
            try:
                await task
            except BaseException:
                for other in self._running:
                    other.cancel()
                await asyncio.gather(*self._running, return_exceptions=True)
                self._running.clear()
                raise

    async def _apply(self, jobs: list[Job], turn: Turn | None) -> None:
        landed = False
        try:
            await self.prefilter(jobs)
            todo = [j for j in jobs if j.outcome is None and j.rejected is None]
            if todo and self.bulk is not None:
                landed = await self._in_bulk(todo, turn)
            if todo and not landed:
                if turn is not None:
                    await turn.after_previous()
                if self.bulk is None or not await _bulk_batch(
                    self.sessions, todo, self.bulk, self.apply, None
                ):
                    await _apply_batch(self.sessions, todo, self.apply)
            if turn is not None:
                await turn.after_previous()  # outcomes are recorded in file order
        finally:
            if turn is not None:
                turn.settle(landed)
        if self.statistics is not None and todo:
            await self.statistics.grown(len(todo))
        for job in jobs:
            if job.rejected is not None:
                self.summary.reject(job.line, job.rejected, job.rows)
            else:
                self.summary.add(job.outcome or "unknown")
            if self.on_done:
                self.on_done(job)

    async def _in_bulk(self, todo: list[Job], turn: Turn | None) -> bool:
        """The first bulk attempt; True if it landed."""
        result = await _bulk_batch(self.sessions, todo, self.bulk, self.apply, turn)  # type: ignore[arg-type]
        if turn is not None:
            self.carried += turn.uses
        if result is None:
            self.replayed_again += 1
        return bool(result)


YIELD_EVERY = 16
"""Jobs read between two turns of the event loop while a batch is being applied."""


def progress_bar(total: int, enabled: bool, desc: str) -> tqdm:
    return tqdm(total=total, unit="row", desc=desc, disable=None if enabled else True, leave=False)
