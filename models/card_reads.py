"""Reading the card tracker (`models.cards`): a member's card, the applications by status
and store, an application's history."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.cards import check_status
from models.tables.cards import CardApplication, CardEvent


async def newest_application(session: AsyncSession, *, member_id: int) -> CardApplication | None:
    """The member's card: their newest application that was not cancelled."""
    stmt = (
        select(CardApplication)
        .where(CardApplication.member_id == member_id, CardApplication.status != "cancelled")
        .order_by(col(CardApplication.created_at).desc(), col(CardApplication.id).desc())
    )
    return (await session.exec(stmt)).first()


async def list_applications(
    session: AsyncSession, *, status: str | None = None, store_id: int | None = None
) -> list[CardApplication]:
    """Applications, oldest first, optionally of one status and/or one store."""
    stmt = select(CardApplication)
    if status is not None:
        stmt = stmt.where(CardApplication.status == check_status(status))
    if store_id is not None:
        stmt = stmt.where(CardApplication.store_id == store_id)
    stmt = stmt.order_by(col(CardApplication.created_at), col(CardApplication.id))
    rows = await session.exec(stmt)
    return list(rows)


async def events(session: AsyncSession, *, application_id: int) -> list[CardEvent]:
    """The application's history, in order."""
    rows = await session.exec(
        select(CardEvent)
        .where(CardEvent.application_id == application_id)
        .order_by(col(CardEvent.id))
    )
    return list(rows)
