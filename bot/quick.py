"""The quick path: a bound WeChat member's "积分" answered from one raw read.

The usual message to the bot is a member asking for their points. Through a session
it costs a transaction and two or three statements on SQLAlchemy, several times the
CPU of everything else the webhook does. `QuickPoints.answer` reads what the answer
needs — the sender's identity, the member it is actively bound to, whether the
sender has a pending confirmation, the member's purchases in the tier windows, the
next expiry and (when a level takes effect on approval) the open card
applications — in one statement on the raw driver (`models.rawdb`), one snapshot, and
builds the reply with the same code as the normal path (`models.tiers.progress.
progress_from_sales`, `bot.handlers.points.answer`), so the text is the same. The
reads of concurrent messages share that statement (`FACTS`). Given the message's
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
  purchases; `models.tiers.progress.needs_totals`).

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
from models.cards import OPEN
from models.clock import day_end, day_start, local_date
from models.group_commit import GroupWriter
from models.locale_format import pick_locale
from models.settings import Settings
from models.tiers.progress import needs_totals, progress_from_sales, sales_start
from models.tiers.upgrade import needs_applications, pending_from
from models.types import from_cents

_OPEN = ", ".join(f"'{status}'" for status in sorted(OPEN))
FACTS = """
SELECT i.address, i.active, i.last_inbound_at, m.id, m.name,
       m.points - (SELECT COALESCE(SUM(l.remaining), 0) FROM points_lots l
                    WHERE l.member_id = m.id AND l.remaining > 0 AND l.expires_on < ?),
       m.tier,
       m.cumulative_spend, m.locale, m.birthday_month, m.birthday_day, m.birthday_calendar,
       m.birthday_leap_month, m.eligible_tier,
       (SELECT COUNT(*) FROM pending_actions p
         WHERE p.channel = 'wechat' AND p.sender = i.address),
       (SELECT {agg}(CAST(p.local_date AS TEXT) || ' ' || CAST(COALESCE(p.points, 0) AS TEXT)
                     || ' ' || CAST(COALESCE(p.amount, 0) AS TEXT), ',')
          FROM purchases p
         WHERE p.member_id = m.id AND p.local_date >= ? AND p.local_date <= ?),
       (SELECT CAST(l.expires_on AS TEXT) || ' ' || CAST(SUM(l.remaining) AS TEXT)
          FROM points_lots l
         WHERE l.member_id = m.id AND l.remaining > 0 AND l.expires_on >= ?
         GROUP BY l.expires_on ORDER BY l.expires_on LIMIT 1),
       {applications},
       {seen}
FROM {rows}identities i LEFT JOIN members m ON m.id = i.member_id AND i.active
WHERE i.channel = 'wechat' AND i.address {who}"""
"""The rows of the openids of concurrent messages, read in one statement (per statement
the driver's and the database's fixed costs outweigh the lookups themselves: on SQLite
~25 µs of CPU per message in the server when each message had its own statement).

One row per openid: the identity, the member it is actively bound to (else NULLs),
whether a confirmation is pending, the balance less the lots already past their last
day (the daily job may not have expired them yet), and as text the member's purchases in the tier
windows ("day points cents,…"), the next expiry ("day points": the smallest day of
the open lots from today on and their sum — what `models.points_reads.NEXT_EXPIRY` says),
the tiers of the open card applications ("gold,…"), and whether the inbound log
already has the message (`bot.inbound_log`: its de-duplication key; a retry, or a
message another request is handling). Each identity and each key looked up once,
every other part by the member's id on its (member_id, …) index. Parameters: today,
first sales day, today, today, then those of `SQLITE` or `POSTGRESQL`."""
_APPLICATIONS = f"""(SELECT {{agg}}(c.tier, ',') FROM card_applications c
          WHERE c.member_id = m.id AND c.status IN ({_OPEN}))"""
SQLITE = {
    "agg": "group_concat",
    "seen": "(SELECT COUNT(*) FROM inbound_messages d"
    " WHERE d.channel = 'wechat' AND d.dedupe_key = w.seen), w.seen",
    "who": "= w.address",
    "rows": "w, ",
}
"""SQLite: the (openid, key) pairs are the rows of `w`, given before the statement as
`WITH w(address, seen) AS (VALUES (?, ?), …)` (`QuickPoints._sqlite_text`; one text per
batch size, at most `SQLITE_BATCH` pairs); a row per pair, its key as the last column."""
SQLITE_BATCH = 32
POSTGRESQL = {
    "agg": "string_agg",
    "seen": "(SELECT array_agg(k) FROM unnest(?::text[]) AS k WHERE (SELECT true"
    " FROM inbound_messages d WHERE d.channel = 'wechat' AND d.dedupe_key = k LIMIT 1))",
    "who": "= ANY(?::text[])",
    "rows": "",
}
"""PostgreSQL: the keys, then the openids, as arrays; a row per openid, with the keys
of the batch that the log has. The keys are looked up one by one (a subplan per key,
both index columns in the lookup): `dedupe_key = ANY(keys)` would let a plan made while
the log looked empty scan every message of the channel for each read, as the log
grows (`tests/test_quick_answers.py`)."""

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
        self._applications = needs_applications(tier_rules)
        form = SQLITE if raw.dialect == "sqlite" else POSTGRESQL
        applications = _APPLICATIONS.format(agg=form["agg"]) if self._applications else "NULL"
        self._sql = FACTS.format(applications=applications, **form)
        self._sqlite_texts: dict[int, str] = {}
        self._stamp = identities.stamp_text(raw.dialect)
        self._reads: GroupWriter[tuple[str, date, str | None], tuple | None] = GroupWriter(
            self._read_many
        )
        self._start: tuple[date, date] | None = None
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
        if sender is None or not sender[1] or sender[3] is None or sender[14] or sender[18]:
            # unknown, unbound or inactive openid, a pending confirmation, or seen before
            return None
        facts = (today, sender[4:14], sender[15], sender[16], sender[17])
        reply = self._compose(facts)
        stamp = rawdb.read_time(sender[2])
        stale = now - self._touch_every
        if stamp is None or stamp <= stale:
            at = rawdb.sql_time(now, dialect)
            args = (at, "wechat", openid, rawdb.sql_time(stale, dialect))  # STAMP_ARGS
            raw.defer(self._stamp, args, openid)
            await rawdb.pace(raw)
        return reply

    def _answer(self, facts: tuple) -> Reply:
        """The reply from what was read: `_compose` remembers the last `ANSWERS_KEPT`."""
        today, member_row, sale_rows, expiry_row, applications = facts  # texts, see FACTS
        name, balance, tier, spend, locale, b_month, b_day, b_calendar, b_leap, eligible = (
            member_row
        )
        member = points.PointsFacts(
            name=name,
            points=balance,
            tier=tier,
            cumulative_spend=from_cents(spend),
            birthday_month=b_month,
            birthday_day=b_day,
            birthday_calendar=b_calendar,
            birthday_leap_month=bool(b_leap),
        )
        sales = []
        for sale in sale_rows.split(",") if sale_rows else ():
            day, pts, cents = sale.split(" ")
            sales.append((date.fromisoformat(day), int(pts), int(cents)))
        expiring = None
        if expiry_row is not None:
            day, pts = expiry_row.split(" ")
            expiring = (int(pts), date.fromisoformat(day))
        applications = applications.split(",") if applications else []
        rules = self._rules
        pending = pending_from(
            rules.tiers, tier=tier, eligible=eligible, applications=applications
        )
        progress = progress_from_sales(
            rules.tiers, tier=tier, pending=pending, sales=sales, today=today
        )
        return points.answer(
            rules=rules,
            brand=self._brand.name,
            locale=pick_locale(locale, self._brand.locale),
            today=today,
            member=member,
            progress=progress,
            expiring=expiring,
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

    def _args(self, today: date) -> list:
        """The statement's day parameters (today, first sales day, today, today)."""
        dialect = self._raw.dialect
        day = rawdb.sql_date(today, dialect)
        return [day, rawdb.sql_date(self._sales_start(today), dialect), day, day]

    def _sales_start(self, today: date) -> date:
        """The first day of purchases the answer may need (worked out once a day)."""
        if self._start is None or self._start[0] != today:
            start = sales_start(self._rules.tiers, today) or today + timedelta(days=1)
            self._start = (today, start)
        return self._start[1]

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
            for row in await self._raw.fetch(self._sql, *self._args(today), keys, openids):
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
            values = ", ".join(["(?, ?)"] * pairs)
            text = f"WITH w(address, seen) AS (VALUES {values}){self._sql}"
            self._sqlite_texts[pairs] = text
        return text
