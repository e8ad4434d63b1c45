"""The quick path: a bound WeChat member's "积分" answered from one raw read.

The usual message to the bot is a member asking for their points. Through a session
it costs a transaction and two or three statements on SQLAlchemy, several times the
CPU of everything else the webhook does. `QuickPoints.answer` reads what the answer
needs — the sender's identity, the member it is actively bound to, whether the
sender has a pending confirmation, and the points answer's facts (the member's
purchases in the tier windows, the next expiry, the open card applications when a
level takes effect on approval) — in one statement on the raw driver (`models.rawdb`),
one snapshot. That statement is the session path's read with the sender's columns
added (`models.tiers.facts.sender_read` around `member_facts`, compiled once by
`models.rawdb.compiled`), and the reply is built by the same code as the normal path
(`models.tiers.facts.answer_facts`, `bot.handlers.points.answer`), so the text is the
same. The reads of concurrent messages share that statement. Given the message's
de-duplication key (`unseen`), the same read also shows whether the inbound log has
it: the webhook then answers without a claim (`bot.inbound_log`, step 5).

It answers only when that is all the message needs, and otherwise returns None so
that `bot.bot.MemberBot` takes the normal path — which then also makes every write
the message implies:

- an unknown openid (the identity is created), an unbound or inactive identity (the
  answer is how to bind: an unbound sender never gets member data — the quick path
  answers only from the member the identity is actively bound to);
- a pending confirmation of the sender (any other message cancels it: a write);
- rules with a ``cumulative`` reach rule (their progress needs a sum over all
  purchases, one more statement each; `models.tiers.progress.needs_totals`).

The one write of a quick answer is the sender's `last_inbound_at`, when it is older
than `touch_every` (the 48-hour customer-service window, MESSAGING.md): it is
written behind the reply (`RawDb.defer`, batched with other requests' writes) by the
normal path's own statement (`models.identities.STAMP`: only when still older than
`touch_every`, so never moving the stamp back), so it lands milliseconds after the
answer — well inside the minute `MemberBot` already allows that stamp to lag.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from bot.conversation import Reply
from bot.handlers import points
from models import identities, rawdb
from models.clock import day_end, day_start, local_date
from models.group_commit import GroupWriter
from models.locale_format import pick_locale
from models.settings import Settings
from models.tiers import facts
from models.tiers.progress import needs_totals
from models.tiers.upgrade import needs_applications

SQLITE_BATCH = 32
"""SQLite: at most this many (openid, key) pairs per statement (`models.tiers.facts.
sqlite_prefix`); PostgreSQL takes the batch's keys and openids as two arrays."""

_NEVER = datetime.min.replace(tzinfo=UTC)

ANSWERS_KEPT = 4096
"""Replies remembered by everything they are made from (`QuickPoints._answer` is a pure
function of the day and the rows read): a member who asks again while nothing of theirs
changed gets the same text without the tier arithmetic and the template again. The
rows are read fresh for every message; only the arithmetic and rendering are saved."""

class QuickPoints:
    """`answer(openid, now)`: the points reply of a bound WeChat member, or None."""

    def __init__(self, settings: Settings, raw: rawdb.RawDb, *, touch_every: timedelta):
        self._rules = settings.loyalty
        self._brand = settings.brand
        self._raw = raw
        self._touch_every = touch_every
        tier_rules = self._rules.tiers
        self.usable = not needs_totals(tier_rules)
        """False when the rules need what one read cannot give: always the normal path."""
        read = facts.sender_read(raw.dialect, needs_applications(tier_rules))
        self._sql, self._names = rawdb.compiled(read, raw.dialect)
        self._sqlite_texts: dict[int, str] = {}
        self._stamp = identities.stamp_text(raw.dialect)
        self._reads: GroupWriter[tuple[str, date, str | None], tuple | None] = GroupWriter(
            self._read_many
        )
        self._start: tuple[date, dict] | None = None
        self._day: tuple[datetime, datetime, date] = (_NEVER, _NEVER, date.min)
        """[start, end) of the brand day last seen, and that day."""
        self._compose = lru_cache(maxsize=ANSWERS_KEPT)(self._answer)

    async def answer(self, openid: str, now: datetime, unseen: str | None = None) -> Reply | None:
        """The reply, or None for the normal path. With `unseen` (a de-duplication key of
        `bot.inbound_log`), also None when the inbound log already has that key: the same
        read shows whether the message is a retry (`bot.inbound_log.InboundLog.
        respond_once` answers without a claim only when it is not)."""
        if not self.usable:
            return None
        raw, dialect = self._raw, self._raw.dialect
        day = self._day
        today = day[2] if day[0] <= now < day[1] else self._new_day(now)
        sender = await self._reads.submit((openid, today, unseen))
        if sender is None or not sender[1] or sender[3] is None or sender[4] or sender[18]:
            # unknown, unbound or inactive openid, a pending confirmation, or seen before
            return None
        reply = self._compose(today, sender[5 : 5 + facts.FACT_COLUMNS])
        stamp = rawdb.read_time(sender[2])
        stale = now - self._touch_every
        if stamp is None or stamp <= stale:
            at = rawdb.sql_time(now, dialect)
            args = (at, "wechat", openid, rawdb.sql_time(stale, dialect))  # STAMP_ARGS
            raw.defer(self._stamp, args, openid)
            await rawdb.pace(raw)
        return reply

    def _answer(self, today: date, row: tuple) -> Reply:
        """The reply from what was read (`member_facts` columns): `_compose` remembers
        the last `ANSWERS_KEPT`."""
        found = facts.answer_facts(self._rules.tiers, row, today)
        return points.answer(
            rules=self._rules,
            brand=self._brand.name,
            locale=pick_locale(found.locale, self._brand.locale),
            today=today,
            member=found.member,
            progress=found.progress,
            expiring=found.expiring,
        )

    def _new_day(self, now: datetime) -> date:
        """The brand day of `now`, remembered with its bounds (and, on SQLite, the
        statement's day parameters) for the next messages of the same day."""
        tz = self._brand.tz
        today = local_date(now, tz)
        start, end = day_start(today, tz), day_end(today, tz)
        last = end - timedelta(microseconds=1)
        if (
            local_date(start, tz) == today == local_date(last, tz)
            and start.astimezone(tz).utcoffset() == last.astimezone(tz).utcoffset()
        ):  # one offset all day: every instant in [start, end) is on `today`
            self._day = (start, end, today)
        else:  # a zone change within the day: work the day out for every message
            self._day = (_NEVER, _NEVER, today)
        return today

    def _args(self, today: date, **arrays: list[str]) -> list:
        """The statement's parameters in order: the day ones (`today`, `start`, worked
        out once a day) and on PostgreSQL the arrays `keys` and `openids`."""
        if self._start is None or self._start[0] != today:
            dialect, tiers = self._raw.dialect, self._rules.tiers
            days = {
                "today": rawdb.sql_date(today, dialect),
                "start": rawdb.sql_date(facts.first_sales_day(tiers, today), dialect),
            }
            self._start = (today, days)
        values = {**self._start[1], **arrays}
        return [values[name] for name in self._names]

    async def _read_many(self, items: list[tuple[str, date, str | None]]) -> list[tuple | None]:
        """The rows of several (openid, day, key), one statement per day (and per
        `SQLITE_BATCH` pairs on SQLite); in each, the "seen" column says whether the
        item's own key is in the inbound log."""
        if self._raw.dialect == "sqlite":
            return await self._read_sqlite(items)
        rows: dict[tuple[str, date], tuple] = {}
        seen: set[str] = set()
        for today in {day for _, day, _ in items}:
            batch = [(openid, key) for openid, day, key in items if day == today]
            keys = sorted({key for _, key in batch if key is not None})
            openids = sorted({openid for openid, _ in batch})
            args = self._args(today, keys=keys, openids=openids)
            for row in await self._raw.fetch(self._sql, *args):
                rows[(row[0], today)] = row
                seen.update(row[18] or ())
        found: list[tuple | None] = []
        for openid, today, key in items:
            row = rows.get((openid, today))
            found.append(None if row is None else (*row[:18], key in seen))
        return found

    async def _read_sqlite(self, items: list[tuple[str, date, str | None]]) -> list[tuple | None]:
        found: dict[tuple[str, date, str | None], tuple] = {}
        for today in {day for _, day, _ in items}:
            pairs = list(dict.fromkeys((o, k) for o, day, k in items if day == today))
            for start in range(0, len(pairs), SQLITE_BATCH):
                chunk = pairs[start : start + SQLITE_BATCH]
                values = [value for pair in chunk for value in pair]
                sql = self._sqlite_text(len(chunk))
                for row in await self._raw.fetch(sql, *values, *self._args(today)):
                    found[(row[0], today, row[19])] = row
        return [found.get(item) for item in items]

    def _sqlite_text(self, pairs: int) -> str:
        text = self._sqlite_texts.get(pairs)
        if text is None:
            text = f"{facts.sqlite_prefix(pairs)} {self._sql}"
            self._sqlite_texts[pairs] = text
        return text
