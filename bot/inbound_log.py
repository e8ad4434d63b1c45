"""Exactly one effect per inbound message, the same answer for every retry, and a deadline.

MESSAGING.md "WeChat": WeChat waits 5 s for the passive reply, then retries (3 tries
in all); "a retried message has exactly one effect and gets the same answer";
"when an answer needs longer, reply `success` and send the answer through the
customer-service API". Twilio wants an answer within 15 s and may deliver twice.

How (`InboundLog.respond_once`):

1. The first request for a key inserts an `inbound_messages` row as `processing`
   (INSERT … ON CONFLICT DO NOTHING, committed at once). Only the request whose
   insert took effect runs the handler; so a message has one effect even when its
   retries land on other processes, because the state is in the database.
2. It waits for the handler until the deadline. In time: the answer is stored
   (`answered`) and returned. Too late: the row becomes `deferred`, the caller answers
   the platform at once ("success" / empty TwiML) and delivers the answer itself when
   the handler finishes (`deliver_late`), ending in `sent` or `failed`.
3. Any other request for the key (a retry, a duplicate, another replica) waits —
   up to its own deadline — for the row to leave `processing`, then gives the stored
   answer (`answered`) or nothing (`deferred`: the answer goes or went by the API,
   so a retry never causes a second send). A duplicate within one process waits on
   the first request's future without touching the database; across processes it
   polls the row.
4. If the handler raises, the claim is released (the row deleted) and every waiting
   duplicate fails too, so the platform's next retry starts afresh.
5. A message that changes nothing may skip the claim (`quick=`, e.g. a bound member's
   "积分", `bot.bot.MemberBot.quick`): the conversation's one read answers it and also
   shows the key is not in the log (else steps 1–3, so a retry still gets the stored
   answer); the answer is stored behind the reply as an `answered` row (INSERT … ON
   CONFLICT DO NOTHING: a copy that got there first keeps its row). A copy arriving
   before that row lands answers from the same data again: no second effect, since
   the only write is the forward-only `last_inbound_at` stamp.

The log is on the hot path of every webhook, so it runs on the raw driver
(`bot.rawdb`, no SQLAlchemy) with one statement per message: the claim
(INSERT … ON CONFLICT DO NOTHING RETURNING id), committed before the handler runs —
on SQLite in the batch transaction of the writes queued meanwhile, on PostgreSQL as
one multi-row statement per batch (`bot.group_commit`). The answer of step 2 is
stored *behind* the reply (`RawDb.defer`, batched with other writes): a retry that
meanwhile finds the row `processing` waits for it (step 3), exactly as for a message
still being handled; `settle()` waits until the stored answers are committed, and
the final statuses of step 2's late path (`deferred`, `sent`, `failed`) are awaited.
If the process dies between the reply and that write, the row stays `processing` and
retries answer nothing (step 3's deadline) — the member already has the answer.
Keys are written in sorted order, so two processes never deadlock. Without a raw
driver (an in-memory SQLite database) the same steps go through SQLAlchemy Core.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import eager, rawdb
from bot.conversation import Reply
from bot.group_commit import GroupWriter
from models.db import insert_ignore
from models.tables import InboundMessage
from models.types import utcnow

log = logging.getLogger("memberbot.inbound")

TABLE = InboundMessage.__table__
PROCESSING, ANSWERED, DEFERRED = "processing", "answered", "deferred"
SENT, FAILED = "sent", "failed"
KEY_MAX = 200
"""`inbound_messages.dedupe_key` is a varchar(200)."""


def bounded_key(key: str) -> str:
    """A de-duplication key that fits the column: a longer one is replaced by its hash
    (an over-long key would fail on PostgreSQL, and with it the batch it went in)."""
    if len(key) <= KEY_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class HandlingFailed(Exception):
    """The handler of this message (or of the duplicate being waited for) raised."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to answer the platform now.

    `answered`: `text` is the answer (None: answer nothing). `deferred`: answer nothing
    now; the answer goes, or went, another way. If this request is the one that must
    deliver it, `late` is the handler's task and `claim_id` its row.
    """

    kind: Literal["answered", "deferred"]
    text: str | None = None
    late: asyncio.Future[Reply] | None = None
    claim_id: int | None = None


class InboundLog:
    def __init__(self, engine: AsyncEngine, *, poll_interval: float = 0.05):
        self._engine = engine
        self._dialect = engine.dialect.name
        self._raw = rawdb.for_engine(engine)
        self.poll_interval = poll_interval
        self._local: dict[tuple[str, str], asyncio.Future[Outcome | None]] = {}
        self._background: set[asyncio.Task] = set()
        self._claims: GroupWriter[tuple[str, str], int | None] = GroupWriter(self._write_claims)
        self._updates: GroupWriter[tuple[int, str, str | None], None] = GroupWriter(
            self._write_updates
        )
        self.waiting = 0
        """Duplicates waiting for the first request's answer right now (in this process)."""

    # ------------------------------------------------------------------ the protocol

    async def respond_once(
        self,
        channel: str,
        key: str,
        handler: Callable[[], Awaitable[Reply]],
        *,
        deadline: float,
        quick: Callable[[], Awaitable[Reply | None]] | None = None,
    ) -> Outcome:
        """Run `handler` once per (channel, key) and say what to answer now.

        `deadline` is a `loop.time()` by which this request must answer. Raises
        HandlingFailed if the handler (this one's or the awaited first one's) raised.
        `quick`, when given, is tried first: a reply from it (a message that changes
        nothing, read in a snapshot without `key`) is the answer, stored behind it, with
        no claim; None goes the claimed way.
        """
        loop = asyncio.get_running_loop()
        first = self._local.get((channel, key))
        if first is None and quick is not None and self._raw is not None:
            reply = await quick()
            if reply is not None:
                text = reply.text or None
                now = rawdb.sql_time(utcnow(), self._raw.dialect)
                self._raw.defer(_ANSWERED, (channel, key, ANSWERED, text, now, now), key)
                await rawdb.pace(self._raw)
                return Outcome("answered", text)
            first = self._local.get((channel, key))  # a copy went the claimed way meanwhile
        if first is not None:  # a duplicate within this process: wait for the first one
            self.waiting += 1
            try:
                return await self._wait_local(first, deadline)
            finally:
                self.waiting -= 1
        mine: asyncio.Future[Outcome | None] = loop.create_future()
        self._local[(channel, key)] = mine
        try:
            outcome = await self._respond(channel, key, handler, deadline)
            mine.set_result(Outcome(outcome.kind, outcome.text))
            return outcome
        finally:
            if not mine.done():
                mine.set_result(None)  # failed: the duplicates fail too
            del self._local[(channel, key)]

    async def _respond(
        self, channel: str, key: str, handler: Callable[[], Awaitable[Reply]], deadline: float
    ) -> Outcome:
        claim_id = await self._claim(channel, key)
        if claim_id is None:  # seen before, or being handled by another process
            self.waiting += 1
            try:
                return await self._poll(channel, key, deadline)
            finally:
                self.waiting -= 1
        task = eager.start(handler())
        if not await _finished_by(task, deadline):
            await self._record(claim_id, DEFERRED, None)
            return Outcome("deferred", late=task, claim_id=claim_id)
        if task.exception() is not None:
            await self._release(claim_id)
            raise HandlingFailed(f"{channel} {key}") from task.exception()
        text = task.result().text or None
        self._record_later(claim_id, ANSWERED, text)
        if self._raw is not None:
            await rawdb.pace(self._raw)
        return Outcome("answered", text)

    async def deliver_late(
        self, outcome: Outcome, deliver: Callable[[str], Awaitable[None]]
    ) -> None:
        """Await a deferred handler and hand its answer to `deliver` (once); record how it went."""
        assert outcome.late is not None and outcome.claim_id is not None
        try:
            reply = await outcome.late
        except Exception:
            log.exception("late handler failed")
            await self._record(outcome.claim_id, FAILED, None)
            return
        text = reply.text or None
        status = SENT
        if text is not None:
            try:
                await deliver(text)
            except Exception:
                log.exception("late answer could not be delivered")
                status = FAILED
        await self._record(outcome.claim_id, status, text)

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run background work (late deliveries) that `aclose` waits for."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, within: float | None = None) -> set[asyncio.Task]:
        """Wait until the late deliveries under way are done and the answers stored; the
        deliveries still running after `within` seconds are returned."""
        pending: set[asyncio.Task] = set()
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=within)
        await self.settle()
        return pending

    async def settle(self) -> None:
        """Wait until every answer given so far is stored (they are written behind)."""
        if self._raw is not None:
            await self._raw.settle()

    async def aclose(self, grace: float = 10.0) -> None:
        """On shutdown: let late deliveries finish (up to `grace` s), then cancel the rest;
        store the answers still queued."""
        pending = await self.drain(grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.settle()

    # ------------------------------------------------------------------ the rows

    async def _claim(self, channel: str, key: str) -> int | None:
        """Insert the `processing` row of a key, committed; its id, or None if the key was
        seen before. One statement on the raw driver when there is one."""
        raw = self._raw
        if raw is None or raw.dialect == "postgresql":
            return await self._claims.submit((channel, key))
        now = rawdb.sql_time(utcnow(), raw.dialect)
        rows = await raw.write(_CLAIM, channel, key, PROCESSING, now, key=(channel, key))
        return rows[0][0] if rows else None

    def _record_later(self, claim_id: int, status: str, text: str | None) -> None:
        """Store a status (and answer) behind the reply: a retry that meanwhile finds the
        row `processing` waits for it (`_poll`), as for a message still being handled."""
        if self._raw is None:
            self.spawn(self._updates.submit((claim_id, status, text)))
            return
        at = None if status == DEFERRED else rawdb.sql_time(utcnow(), self._raw.dialect)
        self._raw.defer(_UPDATE, (status, text, at, claim_id), claim_id)

    async def _record(self, claim_id: int, status: str, text: str | None) -> None:
        """Store a status now (after everything written behind before it)."""
        if self._raw is None:
            await self._updates.submit((claim_id, status, text))
            return
        self._record_later(claim_id, status, text)
        await self._raw.settle()

    async def _write_claims(self, items: list[tuple[str, str]]) -> list[int | None]:
        """Insert `processing` rows; per item its row id if it won, None if the key was seen
        (a key twice in one batch: the first one wins)."""
        now = utcnow()
        if self._raw is not None:  # PostgreSQL: the batch in one statement, one round trip
            keys = sorted(set(items))
            rows = await self._raw.write(
                _CLAIM_MANY, PROCESSING, now, [c for c, _ in keys], [k for _, k in keys]
            )
            won = {(channel, key): claim_id for claim_id, channel, key in rows}
            return [won.pop(item, None) for item in items]
        rows = [
            {"channel": c, "dedupe_key": k, "status": PROCESSING, "created_at": now}
            for c, k in sorted(set(items))
        ]
        # One statement for every batch size (executemany + RETURNING: SQLAlchemy's
        # "insertmanyvalues"), so it is compiled once, not once per batch size.
        stmt = (
            insert_ignore(self._dialect, TABLE)
            .on_conflict_do_nothing(index_elements=["channel", "dedupe_key"])
            .returning(TABLE.c.id, TABLE.c.channel, TABLE.c.dedupe_key)
        )
        async with self._engine.begin() as conn:
            won = {(r.channel, r.dedupe_key): r.id for r in await conn.execute(stmt, rows)}
        return [won.pop(item, None) for item in items]

    async def _write_updates(self, items: list[tuple[int, str, str | None]]) -> list[None]:
        """Set (row id, status, reply text) of each item; `answered_at` once it is final."""
        now = utcnow()
        rows = [
            {
                "b_id": claim_id,
                "b_status": status,
                "b_text": text,
                "b_at": None if status == DEFERRED else now,
            }
            for claim_id, status, text in sorted(items, key=lambda i: i[0])
        ]
        stmt = (
            update(TABLE)
            .where(TABLE.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                reply_text=bindparam("b_text"),
                answered_at=bindparam("b_at"),
            )
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)
        return [None] * len(items)

    async def _release(self, claim_id: int) -> None:
        if self._raw is not None:
            await self._raw.settle()
            await self._raw.write(_RELEASE, claim_id, key=claim_id)
            return
        async with self._engine.begin() as conn:
            await conn.execute(delete(TABLE).where(TABLE.c.id == claim_id))

    async def _read(self, channel: str, key: str) -> tuple[str, str | None] | None:
        if self._raw is not None:
            return await rawdb.fetch_one(self._raw, _READ, channel, key)
        stmt = select(TABLE.c.status, TABLE.c.reply_text).where(
            TABLE.c.channel == channel, TABLE.c.dedupe_key == key
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else (row.status, row.reply_text)

    async def _wait_local(self, first: asyncio.Future[Outcome | None], deadline: float) -> Outcome:
        """The outcome of the first request in this process, or nothing if not ready in time."""
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            outcome = await asyncio.wait_for(asyncio.shield(first), remaining)
        except TimeoutError:
            return Outcome("deferred")
        if outcome is None:
            raise HandlingFailed("the first request for this message failed")
        return outcome

    async def _poll(self, channel: str, key: str, deadline: float) -> Outcome:
        """The stored answer of a message claimed before, once it is known (or the deadline)."""
        loop = asyncio.get_running_loop()
        while True:
            row = await self._read(channel, key)
            if row is None:
                raise HandlingFailed(f"the first request for {channel} {key} failed")
            status, text = row
            if status == ANSWERED:
                return Outcome("answered", text)
            if status != PROCESSING:
                return Outcome("deferred")
            if loop.time() + self.poll_interval > deadline:
                return Outcome("deferred")
            await asyncio.sleep(self.poll_interval)


async def _finished_by(task: asyncio.Future, deadline: float) -> bool:
    """Wait for `task` until the loop time `deadline`; whether it finished (it keeps
    running either way). What `asyncio.wait` does for one task, without its sets."""
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_=None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_at(deadline, wake)
    task.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()


# The raw-driver statements (`bot.rawdb`): one each per message.
_CLAIM = (
    "INSERT INTO inbound_messages (channel, dedupe_key, status, created_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (channel, dedupe_key) DO NOTHING RETURNING id"
)
_CLAIM_MANY = (
    "INSERT INTO inbound_messages (channel, dedupe_key, status, created_at)"
    " SELECT c, k, ?::varchar, ?::timestamptz FROM unnest(?::text[], ?::text[]) AS t(c, k)"
    " ORDER BY c, k ON CONFLICT (channel, dedupe_key) DO NOTHING"
    " RETURNING id, channel, dedupe_key"
)
"""PostgreSQL: the claims of a batch (keys in sorted order: two processes never deadlock)."""
_ANSWERED = (
    "INSERT INTO inbound_messages"
    " (channel, dedupe_key, status, reply_text, created_at, answered_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel, dedupe_key) DO NOTHING"
)
"""A quick answer's row, written behind the reply: if a duplicate got there first (its
claim, or its own quick answer), that row stays."""
_UPDATE = "UPDATE inbound_messages SET status = ?, reply_text = ?, answered_at = ? WHERE id = ?"
_RELEASE = "DELETE FROM inbound_messages WHERE id = ?"
_READ = "SELECT status, reply_text FROM inbound_messages WHERE channel = ? AND dedupe_key = ?"


async def prune(engine: AsyncEngine, *, before: datetime) -> int:
    """Forget inbound messages created before `before` (platform retries come within
    minutes; a day or more of history is plenty). Returns the number of rows removed."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(TABLE).where(TABLE.c.created_at < before))
    return result.rowcount
