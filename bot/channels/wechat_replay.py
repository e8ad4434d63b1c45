"""Remembering which body each signed WeChat URL came with, across replicas.

A plain-mode `signature` is sha1 of the token, `timestamp` and `nonce`: it does not
cover the body, so whoever sees a signed URL (a proxy's or an access log, a
captured request) could send it again with another member's message. Within the
freshness window (`wechat.max_timestamp_age`; older or newer timestamps are refused
before this) such a URL is accepted with exactly one body: the first one stored
here. The same URL with the same body again (a resend) goes on as usual — the
inbound log then gives it the stored answer; with another body → 403.

Safe mode needs none of this: `msg_signature` also covers the encrypted message, so
a different body under the same URL already fails the signature check.

`ReplayMemory.first_body(url_key, body_hash, signed_at)` stores the pair unless the
URL is known and says whether the body is the URL's own. One statement, committed
before the message is handled: on SQLite in the batch transaction of the writes
queued meanwhile (`models.rawdb`), on PostgreSQL one multi-row statement per batch of
concurrent requests (`models.group_commit`). Under concurrency the database decides:
of two copies of a URL with different bodies, the second insert waits for the
first's row and then finds it (ON CONFLICT), so at most one body is accepted.

Rows whose `signed_at` is older than the window are deleted now and then (at most
every `PURGE_EVERY` of the window, per process), written behind with other writes.
"""

from __future__ import annotations

import hashlib
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from models import rawdb
from models.group_commit import GroupWriter

PURGE_EVERY = 0.25
"""Fraction of `max_age` between two purges by one process."""


def url_key(timestamp: str, nonce: str) -> str:
    """The key of a signed URL: with the token fixed, timestamp and nonce determine the
    signature (hashed, so a long nonce never makes a long key)."""
    return hashlib.sha256(f"{timestamp}\n{nonce}".encode()).hexdigest()


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class ReplayMemory:
    def __init__(self, engine: AsyncEngine, *, max_age: int):
        self._raw = rawdb.for_engine(engine)
        self.max_age = max_age
        self._next_purge = 0.0
        self._batches: GroupWriter[tuple[str, str, int], bool] = GroupWriter(self._first_many)

    async def first_body(self, key: str, body: str, signed_at: int) -> bool:
        """Whether `body` is the body of the signed URL `key` (stored now if the URL is new)."""
        self._purge_now_and_then()
        raw = self._raw
        if raw.dialect == "sqlite":
            rows = await raw.write(_REMEMBER, key, body, signed_at, key=key)
            return not rows or rows[0][0] == body
        return await self._batches.submit((key, body, signed_at))

    async def _first_many(self, items: list[tuple[str, str, int]]) -> list[bool]:
        """PostgreSQL: the batch in one statement, URLs in sorted order
        (two processes never deadlock); a URL twice in the batch: its first body counts."""
        first: dict[str, tuple[str, int]] = {}
        for key, body, signed_at in items:
            first.setdefault(key, (body, signed_at))
        keys = sorted(first)
        rows = await self._raw.write(
            _REMEMBER_MANY, keys, [first[k][0] for k in keys], [first[k][1] for k in keys]
        )
        stored = {key: body for key, body in rows}  # URLs known before, with another body
        return [first[key][0] == body and stored.get(key, body) == body for key, body, _ in items]

    def _stale(self) -> int:
        return int(time.time()) - self.max_age

    def _due_for_purge(self) -> bool:
        now = time.monotonic()
        if now < self._next_purge:
            return False
        self._next_purge = now + self.max_age * PURGE_EVERY
        return True

    def _purge_now_and_then(self) -> None:
        if self._due_for_purge():
            self._raw.defer(_PURGE, (self._stale(),), None)


# Inserted: not returned. Known with the same body: the WHERE keeps the row as it is
# and it is not returned either. Known with another body: "updated" to itself and
# returned with its stored body.
_REMEMBER = (
    "INSERT INTO wechat_signed_urls (url_key, body_hash, signed_at) VALUES (?, ?, ?)"
    " ON CONFLICT (url_key) DO UPDATE SET url_key = excluded.url_key"
    " WHERE wechat_signed_urls.body_hash <> excluded.body_hash"
    " RETURNING body_hash"
)
_REMEMBER_MANY = (
    "INSERT INTO wechat_signed_urls (url_key, body_hash, signed_at)"
    " SELECT u, b, t FROM unnest(?::text[], ?::text[], ?::bigint[]) AS x(u, b, t) ORDER BY u"
    " ON CONFLICT (url_key) DO UPDATE SET url_key = excluded.url_key"
    " WHERE wechat_signed_urls.body_hash <> excluded.body_hash"
    " RETURNING url_key, body_hash"
)
_PURGE = "DELETE FROM wechat_signed_urls WHERE signed_at < ?"
