"""`export_members`: the member sheet as CSV, in the formats the member import reads
back unchanged (`member_row`). The CLI writes it UTF-8 with a BOM so that Excel opens
Chinese names correctly (`bot.csvio.sheet`)."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.csvio.reading import EXPORT_COLUMNS
from models.clock import local_date
from models.identities import active_openids
from models.tables.members import Assistant, Member, Store


def _mmdd(year: int | None, month: int | None, day: int | None) -> str:
    if not month or not day:
        return ""
    return f"{year:04d}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}"


async def code_maps(session: AsyncSession) -> tuple[dict[int, str], dict[int, str]]:
    stores = {i: c for i, c in (await session.exec(select(Store.id, Store.code))).all()}
    assistants = {i: c for i, c in (await session.exec(select(Assistant.id, Assistant.code))).all()}
    return stores, assistants


async def _member_chunks(
    session: AsyncSession, chunk: int
) -> AsyncIterator[tuple[list[Member], dict[int, str]]]:
    """Members in id order, `chunk` at a time (keyset pagination), with their WeChat openids."""
    last = 0
    while True:
        result = await session.exec(
            select(Member).where(Member.id > last).order_by(Member.id).limit(chunk)
        )
        members = list(result.all())
        if not members:
            return
        ids = [m.id for m in members]
        yield members, await active_openids(session, member_ids=ids)
        session.expunge_all()
        last = ids[-1]


def member_row(
    member: Member, *, stores: dict[int, str], assistants: dict[int, str], openid: str, tz: ZoneInfo
) -> dict[str, str]:
    """One member sheet row, in the formats the member import reads back unchanged."""
    return {
        "phone": member.phone,
        "name": member.name or "",
        "gender": member.gender or "",
        "birthday": _mmdd(member.birthday_year, member.birthday_month, member.birthday_day),
        "birthday_calendar": member.birthday_calendar if member.birthday_month else "",
        "wedding_anniversary": _mmdd(member.wedding_year, member.wedding_month, member.wedding_day),
        "store": stores.get(member.store_id, "") if member.store_id else "",
        "assistant": assistants.get(member.assistant_id, "") if member.assistant_id else "",
        "card_no": member.card_no or "",
        "preferred_contact": member.preferred_contact or "",
        "wechat_openid": openid,
        "locale": member.locale or "",
        "join_date": member.join_date.isoformat(),
        "points": str(member.points),
        "tier": member.tier or "",
        "cumulative_spend": f"{member.cumulative_spend:.2f}",
        "last_purchase": local_date(member.last_purchase_at, tz).isoformat()
        if member.last_purchase_at
        else "",
        "stopped": "true" if member.stopped else "false",
    }


async def export_members(
    sessions: async_sessionmaker[AsyncSession], *, out: TextIO, tz: ZoneInfo, chunk: int = 1000
) -> int:
    """Write the member sheet as CSV to `out` (opened with newline=""); return the row count.

    The caller chooses the encoding; the CLI writes UTF-8 with a BOM.
    """
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    count = 0
    async with sessions() as session:
        stores, assistants = await code_maps(session)
        async for members, openids in _member_chunks(session, chunk):
            for m in members:
                writer.writerow(
                    member_row(
                        m, stores=stores, assistants=assistants, openid=openids.get(m.id, ""), tz=tz
                    )
                )
            count += len(members)
    return count
