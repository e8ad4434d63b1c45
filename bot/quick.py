"""The quick path: a bound WeChat member's "积分" answered from one raw read.

The usual message to the bot is a member asking for their points. Through a session
it costs a transaction and two or three statements on SQLAlchemy, several times the
CPU of everything else the webhook does. `QuickPoints.answer` reads what the answer
needs — the sender's identity, the member it is actively bound to, whether the
sender has a pending confirmation, the member's purchases in the tier windows, the
next expiry and (when a level takes effect on approval) the open card
applications — in one statement on the raw driver (`bot.rawdb`), one snapshot, and
builds the reply with the same code as the normal path (`models.tiers.
progress_from_sales`, `bot.handlers.points.answer`), so the text is the same.

It answers only when that is all the message needs, and otherwise returns None so
that `bot.bot.MemberBot` takes the normal path — which then also makes every write
the message implies:

- an unknown openid (the identity is created), an unbound or inactive identity (the
  answer is how to bind: an unbound sender never gets member data — the quick path
  answers only from the member the identity is actively bound to);
- a pending confirmation of the sender (any other message cancels it: a write);
- rules with a ``cumulative`` reach rule (their progress needs a sum over all
  purchases; `models.tiers.needs_totals`).

The one write of a quick answer is the sender's `last_inbound_at`, when it is older
than `touch_every` (the 48-hour customer-service window, MESSAGING.md): it is
written behind the reply (`RawDb.defer`, batched with other requests' writes, in
the same order as the normal path's conditional UPDATE and never moving the stamp
back), so it lands milliseconds after the answer — well inside the minute
`MemberBot` already allows that stamp to lag.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache

from bot import rawdb
from bot.config import Settings
from bot.conversation import Reply
from bot.group_commit import GroupWriter
from bot.handlers import points
from bot.templating import pick_locale
from models import tiers
from models.cards import OPEN
from models.clock import local_date
from models.types import from_cents

MEMBER, SALE, EXPIRY, APPLICATION = 0, 1, 2, 3
ADDRESS = 18
"""The column of every row that names the openid it belongs to."""

_NULLS = ", ".join(["NULL"] * 13)
_SENDER = """
SELECT 0, i.active, i.last_inbound_at, m.id, m.name, m.points, m.tier, m.cumulative_spend,
       m.locale, m.birthday_month, m.birthday_day, m.birthday_calendar,
       m.birthday_leap_month, m.eligible_tier,
       (SELECT COUNT(*) FROM pending_actions p
         WHERE p.channel = 'wechat' AND p.sender = i.address),
       NULL, NULL, NULL, i.address
FROM identities i LEFT JOIN members m ON m.id = i.member_id AND i.active
WHERE i.channel = 'wechat' AND i.address {who}"""
_SALES = f"""
SELECT 1, {_NULLS}, NULL, p.local_date, p.points, p.amount, i.address
FROM identities i JOIN purchases p ON p.member_id = i.member_id
WHERE i.channel = 'wechat' AND i.address {{who}} AND i.active
  AND p.local_date >= ? AND p.local_date <= ?"""
_EXPIRY = f"""
SELECT 2, {_NULLS}, NULL, l.expires_on, SUM(l.remaining), NULL, i.address
FROM identities i JOIN points_lots l ON l.member_id = i.member_id
WHERE i.channel = 'wechat' AND i.address {{who}} AND i.active AND l.remaining > 0
  AND l.expires_on = (SELECT MIN(n.expires_on) FROM points_lots n
                       WHERE n.member_id = i.member_id AND n.remaining > 0
                         AND n.expires_on >= ?)
GROUP BY i.address, l.expires_on"""
_OPEN = ", ".join(f"'{status}'" for status in sorted(OPEN))
_APPLICATIONS = f"""
SELECT 3, NULL, NULL, NULL, NULL, NULL, c.tier, {", ".join(["NULL"] * 11)}, i.address
FROM identities i JOIN card_applications c ON c.member_id = i.member_id
WHERE i.channel = 'wechat' AND i.address {{who}} AND i.active AND c.status IN ({_OPEN})"""
FACTS = _SENDER + "\nUNION ALL" + _SALES + "\nUNION ALL" + _EXPIRY
"""SQLite, one openid. Parameters: openid; openid, first sales day, today; openid, today
(then openid for `_APPLICATIONS`)."""

# PostgreSQL reads the openids of concurrent messages together (a round trip costs more
# than the read), with LATERAL joins so that every member's rows come from the
# (member_id, …) indexes whatever the planner guesses about the array.
_SALES_MANY = f"""
SELECT 1, {_NULLS}, NULL, s.local_date, s.points, s.amount, i.address
FROM identities i CROSS JOIN LATERAL (
  SELECT p.local_date, p.points, p.amount FROM purchases p
  WHERE p.member_id = i.member_id AND p.local_date >= ? AND p.local_date <= ?) s
WHERE i.channel = 'wechat' AND i.address {{who}} AND i.active"""
_EXPIRY_MANY = f"""
SELECT 2, {_NULLS}, NULL, e.day, e.points, NULL, i.address
FROM identities i CROSS JOIN LATERAL (
  SELECT l.expires_on AS day, SUM(l.remaining) AS points FROM points_lots l
  WHERE l.member_id = i.member_id AND l.remaining > 0 AND l.expires_on >= ?
  GROUP BY l.expires_on ORDER BY l.expires_on LIMIT 1) e
WHERE i.channel = 'wechat' AND i.address {{who}} AND i.active"""
FACTS_MANY = _SENDER + "\nUNION ALL" + _SALES_MANY + "\nUNION ALL" + _EXPIRY_MANY
"""PostgreSQL, an array of openids. Parameters: openids; first sales day, today, openids;
today, openids (then openids for `_APPLICATIONS`). The next expiry is the smallest day
of the open lots from today on, with their sum — what `models.points.NEXT_EXPIRY` says."""
MANY = "= ANY(?::text[])"
ONE = "= ?"
ANSWERS_KEPT = 4096
"""Replies remembered by everything they are made from (`QuickPoints._answer` is a pure
function of the day and the rows read): a member who asks again while nothing of theirs
changed gets the same text without the tier arithmetic and the template again. The
rows are read fresh for every message; only the arithmetic and rendering are saved."""
STAMP = (
    "UPDATE identities SET last_inbound_at = ?"
    " WHERE channel = 'wechat' AND address = ?"
    " AND (last_inbound_at IS NULL OR last_inbound_at < ?)"
)
"""The sender's stamp, moved forward only (deferred writes may land out of order)."""


class QuickPoints:
    """`answer(openid, now)`: the points reply of a bound WeChat member, or None."""

    def __init__(self, settings: Settings, raw: rawdb.RawDb, *, touch_every: timedelta):
        self._rules = settings.loyalty
        self._brand = settings.brand
        self._raw = raw
        self._touch_every = touch_every
        tier_rules = self._rules.tiers
        self.usable = not tiers.needs_totals(tier_rules)
        """False when the rules need what one read cannot give: always the normal path."""
        self._applications = tiers.needs_applications(tier_rules)
        self._batched = raw.dialect == "postgresql"
        sql = FACTS_MANY if self._batched else FACTS
        if self._applications:
            sql += "\nUNION ALL" + _APPLICATIONS
        self._sql = sql.format(who=MANY if self._batched else ONE)
        self._reads: GroupWriter[tuple[str, date], list[tuple]] = GroupWriter(self._read_many)
        self._start: tuple[date, date] | None = None
        self._compose = lru_cache(maxsize=ANSWERS_KEPT)(self._answer)

    async def answer(self, openid: str, now: datetime) -> Reply | None:
        if not self.usable:
            return None
        raw, dialect = self._raw, self._raw.dialect
        today = local_date(now, self._brand.tz)
        if self._batched:
            rows = await self._reads.submit((openid, today))
        else:
            rows = await raw.fetch(self._sql, *self._args(openid, today))
        sender = next((r for r in rows if r[0] == MEMBER), None)
        if sender is None or not sender[1] or sender[3] is None or sender[14]:
            return None  # unknown, unbound or inactive openid, or a pending confirmation
        facts = (
            today,
            sender[4:14],  # name … eligible tier
            tuple(row[15:18] for row in rows if row[0] == SALE),
            next((row[15:17] for row in rows if row[0] == EXPIRY), None),
            tuple(row[6] for row in rows if row[0] == APPLICATION),
        )
        reply = self._compose(facts)
        stamp = rawdb.read_time(sender[2])
        if stamp is None or stamp <= now - self._touch_every:
            at = rawdb.sql_time(now, dialect)
            raw.defer(STAMP, (at, openid, at), openid)
            await rawdb.pace(raw)
        return reply

    def _answer(self, facts: tuple) -> Reply:
        """The reply from what was read: `_compose` remembers the last `ANSWERS_KEPT`."""
        today, member_row, sale_rows, expiry_row, applications = facts
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
        sales = [(rawdb.read_date(day), pts or 0, cents or 0) for day, pts, cents in sale_rows]
        expiring = None
        if expiry_row is not None:
            expiring = (int(expiry_row[1]), rawdb.read_date(expiry_row[0]))
        rules = self._rules
        pending = tiers.pending_from(
            rules.tiers, tier=tier, eligible=eligible, applications=applications
        )
        progress = tiers.progress_from_sales(
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

    def _args(self, who, today: date) -> list:
        """The statement's parameters for `who` (an openid, or a list of them)."""
        dialect = self._raw.dialect
        day = rawdb.sql_date(today, dialect)
        first = rawdb.sql_date(self._sales_start(today), dialect)
        if self._batched:
            args = [who, first, day, who, day, who]
        else:
            args = [who, who, first, day, who, day]
        if self._applications:
            args.append(who)
        return args

    def _sales_start(self, today: date) -> date:
        """The first day of purchases the answer may need (worked out once a day)."""
        if self._start is None or self._start[0] != today:
            start = tiers.sales_start(self._rules.tiers, today) or today + timedelta(days=1)
            self._start = (today, start)
        return self._start[1]

    async def _read_many(self, items: list[tuple[str, date]]) -> list[list[tuple]]:
        """The rows of several openids' reads in one statement per day (PostgreSQL)."""
        by_openid: dict[tuple[str, date], list[tuple]] = {item: [] for item in items}
        for today in {day for _, day in items}:
            openids = sorted({openid for openid, day in items if day == today})
            for row in await self._raw.fetch(self._sql, *self._args(openids, today)):
                by_openid[(row[ADDRESS], today)].append(row)
        return [by_openid[item] for item in items]
