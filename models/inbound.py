"""Upkeep of the inbound log's table (`inbound_messages`, see `bot.inbound_log`): its
rows only de-duplicate platform retries, so old history is forgotten by the daily job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from models.tables.inbound import InboundMessage

TABLE = InboundMessage.__table__


async def prune(engine: AsyncEngine, *, before: datetime) -> int:
    """Forget inbound messages created before `before` (platform retries come within
    minutes; a day or more of history is plenty). Returns the number of rows removed."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(TABLE).where(TABLE.c.created_at < before))
    return result.rowcount
