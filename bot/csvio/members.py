"""`import_members`: create or update members from a member sheet; rows equal to what
is stored are "unchanged" without a write (an export imported back changes nothing)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.csvio.batches import DEFAULT_BATCH, Batcher, Job, progress_bar
from bot.csvio.export import code_maps, member_row
from bot.csvio.reading import EXPORT_COLUMNS, MEMBER_COLUMNS, check_file, read_rows
from bot.csvio.report import ImportSummary, validation_reason
from models.bulk.members import create_members
from models.bulk.pipeline import Turn
from models.bulk.stats import MEMBER_TABLES
from models.errors import DomainError
from models.identities import active_openid, active_openids
from models.member_input import MemberIn, parse_day
from models.members import upsert_member
from models.rules import LoyaltyRules
from models.tables.members import Member


def _member_snapshot(member: Member, openid: str | None) -> tuple:
    data = member.model_dump(exclude={"updated_at"})
    return tuple(sorted(data.items(), key=lambda kv: kv[0])) + (openid,)


async def _current_rows(
    session: AsyncSession, phones: list[str], tz: ZoneInfo
) -> dict[str, dict[str, Any]]:
    """The stored member sheet rows (as `member_row` writes them) of these phones."""
    if not phones:
        return {}
    members = (await session.exec(select(Member).where(col(Member.phone).in_(phones)))).all()
    if not members:
        return {}
    stores, assistants = await code_maps(session)
    openids = await active_openids(session, member_ids=[m.id for m in members])
    rows = {}
    for m in members:
        row: dict[str, Any] = member_row(
            m, stores=stores, assistants=assistants, openid=openids.get(m.id, ""), tz=tz
        )
        row.update(birthday_leap_month=m.birthday_leap_month, address=m.address)
        rows[m.phone] = row
    return rows


def _same_member(data: MemberIn, row: dict[str, Any]) -> bool:
    """True if every field given in `data` already has that value in the stored `row`."""
    for name in data.model_fields_set:
        given, stored = getattr(data, name), row.get(name)
        if name in ("birthday", "wedding_anniversary"):
            same = bool(stored) and given is not None and parse_day(given) == parse_day(stored)
        elif name == "join_date":
            same = given is not None and given.isoformat() == stored
        elif name == "birthday_calendar":
            # The export leaves the calendar empty when there is no birthday.
            same = given == (stored or "solar")
        else:
            same = given == (stored if stored != "" else None)
        if not same:
            return False
    return True


async def import_members(
    sessions: async_sessionmaker[AsyncSession],
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    path: str | Path,
    today: date,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    total_rows: int | None = None,
    bulk: bool = True,
) -> ImportSummary:
    """Create or update members from a member sheet; identical rows change nothing.

    `bulk`: new members are created set-based (`models.bulk.members`), the same rows as
    `upsert_member` one by one (`bulk=False`)."""
    path = Path(path)
    total = check_file(path, "members") if total_rows is None else total_rows
    summary = ImportSummary("members")

    async def apply(session: AsyncSession, job: Job) -> str:
        data: MemberIn = job.data
        if job.new:
            _member, created = await upsert_member(
                session, rules=rules, tz=tz, data=data, today=today
            )
            return "created" if created else "updated"
        before = await session.exec(select(Member).where(Member.phone == data.phone))
        existing = before.first()
        snapshot = updated_at = None
        if existing is not None:
            snapshot = _member_snapshot(
                existing, await active_openid(session, member_id=existing.id)
            )
            updated_at = existing.updated_at
        member, created = await upsert_member(session, rules=rules, tz=tz, data=data, today=today)
        if created:
            return "created"
        await session.flush()
        after = _member_snapshot(member, await active_openid(session, member_id=member.id))
        if after == snapshot:
            if member.updated_at != updated_at:
                member.updated_at = updated_at  # nothing changed: keep the old timestamp
                await session.flush()
            return "unchanged"
        return "updated"

    async def unchanged(jobs: list[Job]) -> None:
        """Rows equal to what is stored are "unchanged" without a write (re-runs, and an
        export imported back, cost one query per batch)."""
        phones = Counter(job.data.phone for job in jobs)
        async with sessions() as session:
            current = await _current_rows(session, [p for p, n in phones.items() if n == 1], tz)
        for job in jobs:
            if phones[job.data.phone] > 1:
                continue
            row = current.get(job.data.phone)
            if row is None:
                job.new = True
            elif _same_member(job.data, row):
                job.outcome = "unchanged"

    async def in_bulk(session: AsyncSession, jobs: list[Job], turn: Turn | None) -> list[Job]:
        """New members created set-based (`models.bulk.members`); a card number another
        row of the batch also names stays with the one-by-one path (file order decides),
        and so does a phone or card number of the batch still being written before it
        (`turn`: it hands this batch's on, read before that one commits)."""
        previous = await turn.previous_carry() if turn is not None else None
        phones, held = previous or (set(), set())
        cards = Counter(job.data.card_no for job in jobs if job.data.card_no is not None)
        if turn is not None:
            turn.done_replaying(({job.data.phone for job in jobs}, set(cards)))
        fresh = [
            job
            for job in jobs
            if job.new
            and job.data.phone not in phones
            and (
                job.data.card_no is None
                or (cards[job.data.card_no] == 1 and job.data.card_no not in held)
            )
        ]
        left = await create_members(
            session, rules=rules, records=[job.data for job in fresh], today=today, turn=turn
        )
        rest = {id(fresh[i]) for i in left}
        for job in fresh:
            if id(job) not in rest:
                job.outcome = "created"
        return [job for job in jobs if job.outcome is None]

    batcher = Batcher(
        sessions,
        apply,
        summary,
        batch_size,
        unchanged,
        in_bulk if bulk else None,
        tables=MEMBER_TABLES,
    )
    with progress_bar(total, progress, "members") as bar:
        for row in read_rows(path, known=EXPORT_COLUMNS, summary=summary):
            bar.update(1)
            cells = {k: v for k, v in row.cells.items() if k in MEMBER_COLUMNS}
            try:
                data = MemberIn(**cells)
            except ValidationError as exc:
                summary.reject(row.line, validation_reason(exc))
                continue
            except DomainError as exc:
                summary.reject(row.line, exc.message)
                continue
            summary.records += 1
            await batcher.add(Job(row.line, 1, data))
        await batcher.flush()
    return summary
