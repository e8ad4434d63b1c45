"""The rows of `bot.inbound_log`: claims with a lease, stored answers, releases.

A claim is an `inbound_messages` row in `processing` with a lease (`lease_until`). The
holder's later writes (its answer, `deferred`, `sent`, the release) name the row by id
*and* lease, so they apply only while the row is still the holder's: once a lease has
expired and a retry took the message over (`take_over`, a conditional UPDATE that gives
the row a new lease), a late write of the old holder changes nothing.

The inbound log is on the hot path of every webhook, so each row operation is one SQL
statement on the raw driver (`models.rawdb`, no SQLAlchemy), the same for every
database (an in-memory SQLite one included); the claim alone has a PostgreSQL form
for a whole batch of claims. Step numbers are `bot.inbound_log`'s. The claim
(INSERT … ON CONFLICT DO NOTHING RETURNING id), committed before the handler runs —
on SQLite in the batch transaction of the writes queued meanwhile, on PostgreSQL as
one multi-row statement per batch (`models.group_commit`). The answer of step 2 is
stored *behind* the reply (`RawDb.defer`, batched with other writes): a retry that
meanwhile finds the row `processing` waits for it (step 3), exactly as for a message
still being handled; `settle()` waits until the stored answers are committed, and
the final statuses of step 2's late path (`deferred`, `sent`, `failed`) are awaited.
If the process dies between the reply and that write, a retry after the lease takes
the message over (step 4) — one that comes only if that reply was lost as well.
Keys are written in sorted order, so two processes never deadlock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from models import rawdb
from models.group_commit import GroupWriter
from models.types import utcnow

log = logging.getLogger("memberbot.inbound")

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
        self.raw = rawdb.for_engine(engine)
        self._claims: GroupWriter[tuple[str, str, datetime], Claim | None] = GroupWriter(
            self._write_claims
        )

    async def claim(self, channel: str, key: str, lease_until: datetime) -> Claim | None:
        """Insert the `processing` row of a key, committed; its claim, or None if the key
        was seen before. PostgreSQL: with the claims of concurrent requests, in one
        statement; SQLite: in the next batch transaction (`models.rawdb`)."""
        raw = self.raw
        if raw.dialect == "postgresql":
            return await self._claims.submit((channel, key, lease_until))
        now = rawdb.sql_time(utcnow(), raw.dialect)
        lease = rawdb.sql_time(lease_until, raw.dialect)
        rows = await raw.write(_CLAIM, channel, key, PROCESSING, now, lease, key=(channel, key))
        return Claim(*rows[0]) if rows else None

    async def take_over(self, seen: Seen, lease_until: datetime) -> Claim | None:
        """Take a `processing` row whose lease expired (atomically: only if it still has
        the lease that was read); the new claim, or None if another retry was first."""
        old = seen.claim
        lease = rawdb.sql_time(lease_until, self.raw.dialect)
        rows = await self.raw.write(_TAKE_OVER, lease, old.id, old.lease, key=old.id)
        return Claim(*rows[0]) if rows else None

    def record_later(self, claim: Claim, status: str, text: str | None) -> None:
        """Store a status (and answer) behind the reply; `answered_at` once final."""
        at = None if status == DEFERRED else rawdb.sql_time(utcnow(), self.raw.dialect)
        self.raw.defer(_UPDATE, (status, text, at, claim.id, claim.lease), claim.id)

    async def record(self, claim: Claim, status: str, text: str | None) -> None:
        """Store a status now (after everything written behind before it)."""
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
        if fresh:
            await self.raw.once(_RELEASE, claim.id, claim.lease)
            return
        await self.raw.settle()
        await self.raw.write(_RELEASE, claim.id, claim.lease, key=claim.id)

    async def read(self, channel: str, key: str) -> Seen | None:
        row = await rawdb.fetch_one(self.raw, _READ, channel, key)
        if row is None:
            return None
        status, text, row_id, lease = row
        return Seen(status, text, Claim(row_id, lease), rawdb.read_time(lease))

    async def _write_claims(self, items: list[tuple[str, str, datetime]]) -> list[Claim | None]:
        """PostgreSQL: insert `processing` rows; per item its claim if it won, None if the
        key was seen (a key twice in one batch: the first one wins)."""
        now = utcnow()
        leases = {(c, k): lease for c, k, lease in reversed(items)}  # the first one's lease
        keys = sorted(leases)
        rows = await self.raw.write(  # the batch in one statement, one round trip
            _CLAIM_MANY,
            PROCESSING,
            now,
            [c for c, _ in keys],
            [k for _, k in keys],
            [leases[ck] for ck in keys],
        )
        won = {(channel, key): Claim(i, lease) for i, channel, key, lease in rows}
        return [won.pop((c, k), None) for c, k, _ in items]


# The statements (`models.rawdb`, `?` placeholders for every database): one per row operation.
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
