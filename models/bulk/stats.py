"""The planner's statistics kept in step with a bulk import (PostgreSQL).

A fresh install, or a server with autovacuum off, has no statistics for the tables an
import fills: the planner then takes them for nearly empty, and a prepared statement's
generic plan made then (a sequential scan comparing each row with every phone of the
batch) stays in use as they grow — a 100,000-member sheet spent 1.2 s per batch in one
such look-up. `Statistics.grown` runs `ANALYZE` on the import's tables each time the
rows it wrote reach half of what they held at the last one (at least 1,000): a few
times for a fresh database, never for an import small against the tables; `ANALYZE`
also makes the server plan its prepared statements again.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger("memberbot.csv")

MEMBER_TABLES = ("members", "identities", "consent_events", "assignments")
PURCHASE_TABLES = (
    "members",
    "identities",
    "purchases",
    "sale_returns",
    "points_ledger",
    "points_lots",
    "assignments",
    "card_applications",
)

_FLOOR = 1000


class Statistics:
    """ANALYZE `tables` as an import grows them (see the module docstring)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], tables: tuple[str, ...]):
        self.sessions, self.tables = sessions, tables
        self.held: int | None = None
        """Rows of the largest table at the last ANALYZE (or at the start)."""
        self.written = 0
        self.runs = 0

    async def grown(self, rows: int) -> None:
        """`rows` more records written; ANALYZE if that makes enough."""
        if self.held is None:
            self.held = await self._rows()
        self.written += rows
        if self.written < max(_FLOOR, self.held // 2):
            return
        async with self.sessions() as session:
            await session.exec(text(f"ANALYZE {', '.join(self.tables)}"))  # type: ignore[call-overload]
            await session.commit()
        self.held, self.written, self.runs = await self._rows(), 0, self.runs + 1
        log.debug("table statistics refreshed (%d rows in the largest table)", self.held)

    async def _rows(self) -> int:
        """The planner's row count of the largest of `tables` (0 if never analyzed)."""
        stmt = text("SELECT coalesce(max(reltuples), 0) FROM pg_class WHERE relname = ANY(:t)")
        async with self.sessions() as session:
            found = (await session.exec(stmt, params={"t": list(self.tables)})).one()[0]  # type: ignore[call-overload]
        return max(int(found), 0)
