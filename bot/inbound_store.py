"""The rows of `bot.inbound_log`: claims with a lease, stored answers, releases.

A claim is an `inbound_messages` row in `processing` with a lease (`lease_until`). The
holder's later writes (its answer, `deferred`, `sent`, the release) name the row by id
*and* lease, so they apply only while the row is still the holder's: once a lease has
expired and a retry took the message over (`take_over`, a conditional UPDATE that gives
the row a new lease), a late write of the old holder changes nothing.

The hot statements run on the raw driver (`models.rawdb`); without one (an in-memory
SQLite database) the same statements go through SQLAlchemy Core.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from models import rawdb
from models.group_commit import GroupWriter
from models.tables.inbound import InboundMessage
from models.types import utcnow

log = logging.getLogger("memberbot.inbound")

TABLE = InboundMessage.__table__
PROCESSING, ANSWERED, DEFERRED = "processing", "answered", "deferred"
SENT, FAILED = "sent", "failed"

RELEASE_TRIES = 3
"""Tries of a release (each on a connection of its own) before the lease is relied on."""
RELEASE_BACKOFF = 0.1
"""Seconds before the second try of a release; doubles each time."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The holder's handle of a `processing` row: its id and its lease as stored."""

    id: int
    lease: Any


@dataclass(frozen=True, slots=True)
class Seen:
    """A key's row as a retry reads it."""

    status: str
    text: str | None
    claim: Claim
    lease_until: datetime | None

    def expired(self, now: datetime) -> bool:
        """A `processing` row whose holder's lease has run out (it died or lost the
        database): a retry may take it over."""
        return self.status == PROCESSING and self.lease_until is not None and self.lease_until < now


class InboundStore:
    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        self.raw = rawdb.for_engine(engine)
        self._claims: GroupWriter[tuple[str, str, datetime], Claim | None] = GroupWriter(
            self._write_claims
        )
        self._updates: GroupWriter[tuple[Claim, str, str | None], None] = GroupWriter(
            self._write_updates
        )

    async def claim(self, channel: str, key: str, lease_until: datetime) -> Claim | None:
        """Insert the `processing` row of a key, committed; its claim, or None if the key
        was seen before. One statement on the raw driver when there is one."""
        raw = self.raw
        if raw is None or raw.dialect == "postgresql":
            return await self._claims.submit((channel, key, lease_until))
        now = rawdb.sql_time(utcnow(), raw.dialect)
        lease = rawdb.sql_time(lease_until, raw.dialect)
        rows = await raw.write(_CLAIM, channel, key, PROCESSING, now, lease, key=(channel, key))
        return Claim(*rows[0]) if rows else None

    async def take_over(self, seen: Seen, lease_until: datetime) -> Claim | None:
        """Take a `processing` row whose lease expired (atomically: only if it still has
        the lease that was read); the new claim, or None if another retry was first."""
        old = seen.claim
        if self.raw is not None:
            lease = rawdb.sql_time(lease_until, self.raw.dialect)
            rows = await self.raw.write(_TAKE_OVER, lease, old.id, old.lease, key=old.id)
            return Claim(*rows[0]) if rows else None
        stmt = (
            update(TABLE)
            .where(TABLE.c.id == old.id, TABLE.c.status == PROCESSING)
            .where(TABLE.c.lease_until == old.lease)
            .values(lease_until=lease_until)
            .returning(TABLE.c.id, TABLE.c.lease_until)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else Claim(row.id, row.lease_until)

    def record_later(self, claim: Claim, status: str, text: str | None) -> asyncio.Future | None:
        """Store a status (and answer) behind the reply. Without a raw driver, the write's
        future (for the caller to keep track of)."""
        if self.raw is None:
            return asyncio.ensure_future(self._updates.submit((claim, status, text)))
        at = None if status == DEFERRED else rawdb.sql_time(utcnow(), self.raw.dialect)
        self.raw.defer(_UPDATE, (status, text, at, claim.id, claim.lease), claim.id)
        return None

    async def record(self, claim: Claim, status: str, text: str | None) -> None:
        """Store a status now (after everything written behind before it)."""
        if self.raw is None:
            await self._updates.submit((claim, status, text))
            return
        self.record_later(claim, status, text)
        await self.raw.settle()

    async def release(self, claim: Claim) -> bool:
        """Delete a claim whose handler failed, so that the platform's next retry starts
        afresh; tried `RELEASE_TRIES` times, the later tries on a fresh connection. False
        if it could not be done: the lease frees the row when it expires."""
        for attempt in range(1, RELEASE_TRIES + 1):
            try:
                await self._delete(claim, fresh=attempt > 1)
                return True
            except Exception as exc:  # noqa: BLE001 — logged; the lease is the fallback
                if attempt >= RELEASE_TRIES:
                    log.error("could not release claim %s (%s); its lease will", claim.id, exc)
                    return False
                log.warning("releasing claim %s failed (%s), try %d", claim.id, exc, attempt)
            await asyncio.sleep(RELEASE_BACKOFF * 2 ** (attempt - 1))
        return False

    async def _delete(self, claim: Claim, *, fresh: bool = False) -> None:
        if self.raw is not None and fresh:
            await self.raw.once(_RELEASE, claim.id, claim.lease)
            return
        if self.raw is not None:
            await self.raw.settle()
            await self.raw.write(_RELEASE, claim.id, claim.lease, key=claim.id)
            return
        stmt = delete(TABLE).where(TABLE.c.id == claim.id, TABLE.c.lease_until == claim.lease)
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def read(self, channel: str, key: str) -> Seen | None:
        if self.raw is not None:
            row = await rawdb.fetch_one(self.raw, _READ, channel, key)
        else:
            stmt = select(
                TABLE.c.status, TABLE.c.reply_text, TABLE.c.id, TABLE.c.lease_until
            ).where(TABLE.c.channel == channel, TABLE.c.dedupe_key == key)
            async with self._engine.begin() as conn:
                row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        status, text, row_id, lease = row
        return Seen(status, text, Claim(row_id, lease), rawdb.read_time(lease))

    async def _write_claims(self, items: list[tuple[str, str, datetime]]) -> list[Claim | None]:
        """Insert `processing` rows; per item its claim if it won, None if the key was seen
        (a key twice in one batch: the first one wins)."""
        now = utcnow()
        leases = {(c, k): lease for c, k, lease in reversed(items)}  # the first one's lease
        keys = sorted(leases)
        if self.raw is not None:  # PostgreSQL: the batch in one statement, one round trip
            rows = await self.raw.write(
                _CLAIM_MANY,
                PROCESSING,
                now,
                [c for c, _ in keys],
                [k for _, k in keys],
                [leases[ck] for ck in keys],
            )
            won = {(channel, key): Claim(i, lease) for i, channel, key, lease in rows}
        else:
            rows = [
                {
                    "channel": c,
                    "dedupe_key": k,
                    "status": PROCESSING,
                    "created_at": now,
                    "lease_until": leases[(c, k)],
                }
                for c, k in keys
            ]
            # One statement for every batch size (executemany + RETURNING: SQLAlchemy's
            # "insertmanyvalues"), so it is compiled once, not once per batch size.
            stmt = (
                sqlite.insert(TABLE)
                .on_conflict_do_nothing(index_elements=["channel", "dedupe_key"])
                .returning(TABLE.c.id, TABLE.c.channel, TABLE.c.dedupe_key, TABLE.c.lease_until)
            )
            async with self._engine.begin() as conn:
                won = {
                    (r.channel, r.dedupe_key): Claim(r.id, r.lease_until)
                    for r in await conn.execute(stmt, rows)
                }
        return [won.pop((c, k), None) for c, k, _ in items]

    async def _write_updates(self, items: list[tuple[Claim, str, str | None]]) -> list[None]:
        """Set (status, reply text) of each claim still held; `answered_at` once final."""
        now = utcnow()
        rows = [
            {
                "b_id": claim.id,
                "b_lease": claim.lease,
                "b_status": status,
                "b_text": text,
                "b_at": None if status == DEFERRED else now,
            }
            for claim, status, text in sorted(items, key=lambda i: i[0].id)
        ]
        stmt = (
            update(TABLE)
            .where(TABLE.c.id == bindparam("b_id"))
            .where(TABLE.c.lease_until == bindparam("b_lease"))
            .values(
                status=bindparam("b_status"),
                reply_text=bindparam("b_text"),
                answered_at=bindparam("b_at"),
            )
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)
        return [None] * len(items)


# The raw-driver statements (`models.rawdb`): one each per message.
_CLAIM = (
    "INSERT INTO inbound_messages (channel, dedupe_key, status, created_at, lease_until)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, dedupe_key) DO NOTHING"
    " RETURNING id, lease_until"
)
_CLAIM_MANY = (
    "INSERT INTO inbound_messages (channel, dedupe_key, status, created_at, lease_until)"
    " SELECT c, k, ?::varchar, ?::timestamptz, l"
    " FROM unnest(?::text[], ?::text[], ?::timestamptz[]) AS t(c, k, l)"
    " ORDER BY c, k ON CONFLICT (channel, dedupe_key) DO NOTHING"
    " RETURNING id, channel, dedupe_key, lease_until"
)
"""PostgreSQL: the claims of a batch (keys in sorted order: two processes never deadlock)."""
_TAKE_OVER = (
    "UPDATE inbound_messages SET lease_until = ?"
    " WHERE id = ? AND status = 'processing' AND lease_until = ? RETURNING id, lease_until"
)
_UPDATE = (
    "UPDATE inbound_messages SET status = ?, reply_text = ?, answered_at = ?"
    " WHERE id = ? AND lease_until = ?"
)
_RELEASE = "DELETE FROM inbound_messages WHERE id = ? AND lease_until = ?"
_READ = (
    "SELECT status, reply_text, id, lease_until FROM inbound_messages"
    " WHERE channel = ? AND dedupe_key = ?"
)
ANSWERED_ROW = (
    "INSERT INTO inbound_messages"
    " (channel, dedupe_key, status, reply_text, created_at, answered_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel, dedupe_key) DO NOTHING"
)
"""A quick answer's row, written behind the reply: if a duplicate got there first (its
claim, or its own quick answer), that row stays."""
