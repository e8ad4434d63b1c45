"""The daily planner: what is due on brand day D, rendered, checked and routed.

    planned = await plan_day(session, settings=settings, day=date(2026, 11, 7))
    result = await save_plan(session, planned=planned, now=now)

`plan_day` is a pure function of the data and `day`: it reads no clock and
writes nothing (`iter_plan` yields the same messages in bounded chunks, for
days that touch every member). `save_plan` inserts them into the outbox with
``INSERT … ON CONFLICT (member_id, kind, occasion) DO NOTHING``: the database,
not a check-then-insert, makes a rerun or a second replica harmless.

What is due on D (DOMAIN.md §5-7, MESSAGING.md; occasion keys in brackets):

- Purchase follow-ups [``purchase:<id>``], day N counting the sale's brand day
  as day 1 (``[messaging.care_days]``): ``points_notice`` day 2, ``care_d3``
  day 3, ``care_d7`` day 7 for VIP tiers (any tier above the entry tier) or
  ``care_d10`` day 10 for the entry tier (the member's tier when planning),
  ``care_d30`` day 30, ``care_d120`` day 120.
- Quarterly fallback (DOMAIN.md §6 "several follow-ups bring no growth in
  points"): a member is *in fallback* on D when at least ``quarterly_after``
  care messages (not suppressed, planned before D) were planned after the day of
  the member's last purchase before D. In fallback, every per-purchase care
  message due on D is replaced by one ``care_d120`` [``quarter:<YYYY>Q<n>``] —
  at most one per calendar quarter, whichever purchase asks for it — and the
  quarterly care continues on days 120 + 91·k after the last purchase (k >= 1)
  while that day is less than ``dormant_months`` - 1 months after it (the
  ``dormant`` greeting takes over). A new purchase ends the fallback.
- Card pickup [``card:<application id>``] (`card_step_due`): ``card_pickup``
  when an application is ``approved`` since a day before D; ``card_pickup_again``
  when it is ``notified`` and the agreed pickup day has passed;
  ``card_mailed`` when it is ``notified_again``, an address is on file, and both
  the agreed day and the day after the second notice have passed. The planner
  only plans the message: the daily job then moves the application
  (`due_card_steps` gives it the same list) — plan first, then step.
- ``birthday`` [``<YYYY>``]: solar or lunar month/day by `models.calendar`
  (29 Feb on 28 Feb in common years, lunar day 30 on the 29th of a short month,
  leap-month birthdays in the regular month, nothing in a leap month);
  ``wedding_anniversary`` [``<YYYY>``] (solar, from the first anniversary);
  ``join_anniversary`` [``<YYYY>``] (the join date's month/day, from the first
  anniversary, 29 Feb joins on 28 Feb in common years).
- ``holiday`` [``<festival code>:<YYYY>``]: every member, on the first festival
  of ``[occasions]`` falling on D (`scheduler.occasions.festivals_on`);
  ``seasonal`` [``<term code>:<YYYY>``]: every member, on a season-start term.
- ``dormant`` [``since:<last purchase day>``]: on the first day D on which the
  member's last purchase is more than ``dormant_months`` calendar months before D
  (last purchase < D - months, and not yet the day before) — once per last
  purchase. Members who never bought are not dormant.
- ``points_expiry`` [``lots:<expires_on>``]: open points lots whose last day is
  D + ``points_expiry_notice_days``, summed per member.

Every message is rendered in the member's locale (``members.locale``, else
``brand.locale``), signed with the store's and the assistant's names (purchase
follow-ups: the store and assistant of the sale; card messages: of the
application; others: the member's own; an inactive assistant falls back to the
member's, a missing store to the brand's name), and checked by
`scheduler.message_rules.check`. Then, per member (`scheduler.policy`):
stopped → suppressed ``stopped``; a broken rule → ``rule:<rule>``; no channel →
``no_channel``; over the weekly cap → ``capped`` (counting the member's messages
not suppressed whose send time lies in the 7 brand days ending on D). A
suppressed message is still recorded (its key taken), so it is never planned
again.

Scale: every source is read through an index on the date it depends on
(purchases.local_date, members (birthday_calendar, birthday_month,
birthday_day), (wedding_month, wedding_day), join_date, last_purchase_at,
points_lots' open-lots-by-expiry index, card_applications.status); the
context (identities, recent outbox, stores, assistants, items) is read in bulk
for the members due only, ``chunk_size`` at a time. Holiday and seasonal days
page through all members by id (keyset), so memory stays bounded with
`iter_plan`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from jinja2 import Template
from lunardate import LunarDate
from sqlalchemy import Integer, and_, any_, func, insert, literal, or_, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Settings
from models.calendar import LUNAR, SOLAR
from models.clock import add_months, day_end, day_start, local_date
from models.db import insert_ignore
from models.tables import (
    Assistant,
    CardApplication,
    CardEvent,
    Identity,
    Member,
    OutboxEvent,
    OutboxMessage,
    PointsLot,
    Purchase,
    PurchaseItem,
    Store,
)
from scheduler import message_rules, policy, render
from scheduler.kinds import CARE_KINDS, KINDS, LOCALES
from scheduler.occasions import festivals_on, season_start_on

QUEUED = "queued"
SUPPRESSED = "suppressed"
FIRST_EVENT_FROM = "planned"
"""A new outbox message's first event is planned → queued/suppressed (as scheduler.outbox)."""
QUARTER_DAYS = 91
CHUNK = 1000
JOIN_YEARS_BACK = 100
"""Join anniversaries are looked up for join dates up to this many years back."""

_OUTBOX_FIELDS = (
    "member_id", "kind", "occasion", "planned_on", "store_id", "assistant_id", "locale", "text",
    "channel", "via", "address", "status", "reason", "send_after",
)  # fmt: skip
"""The `Planned` fields written to the outbox as they are."""
_KIND_ORDER = {k: i for i, k in enumerate(KINDS)}
_CARD_READY = ("approved", "notified", "notified_again")

# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class Planned:
    """One message due on `planned_on` for one member: what `save_plan` writes."""

    member_id: int
    phone: str
    kind: str
    occasion: str
    planned_on: date
    locale: str
    text: str
    channel: str
    via: str
    address: str
    send_after: datetime
    store_id: int | None
    assistant_id: int | None
    status: str
    """queued | suppressed"""
    reason: str | None = None
    """stopped | no_channel | capped | rule:<rule name> (suppressed only)"""

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.member_id, self.kind, self.occasion)


@dataclass(frozen=True, slots=True)
class SaveResult:
    inserted: int
    """Messages newly written to the outbox (queued or suppressed)."""
    already: int
    """Messages whose (member, kind, occasion) was already in the outbox: nothing written."""
    suppressed: int
    """Of the inserted, those recorded as suppressed."""

    @property
    def queued(self) -> int:
        return self.inserted - self.suppressed


@dataclass(frozen=True, slots=True)
class CardStep:
    """A card-tracker step due on a day, and the message announcing it."""

    application_id: int
    member_id: int
    kind: str
    """card_pickup | card_pickup_again | card_mailed"""
    to_status: str
    """notified | notified_again | mailed"""


# --------------------------------------------------------------------------- pure date rules


def sale_day(day: date, n: int) -> date:
    """The sale day whose day `n` is `day` (the sale's own day is day 1)."""
    return day - timedelta(days=n - 1)


def quarter_occasion(day: date) -> str:
    return f"quarter:{day.year}Q{(day.month - 1) // 3 + 1}"


def _last_of_month(day: date) -> bool:
    return (day + timedelta(days=1)).month != day.month


def solar_days(day: date) -> list[tuple[int, int]]:
    """The solar (month, day) pairs celebrated on `day`: its own, plus the days past
    the month's end when `day` is the last of its month (29 Feb → 28 Feb)."""
    pairs = [(day.month, day.day)]
    if _last_of_month(day):
        pairs += [(day.month, d) for d in range(day.day + 1, 32)]
    return pairs


def lunar_days(day: date) -> list[tuple[int, int]]:
    """The lunar (month, day) pairs celebrated on `day` (`models.calendar` rules):
    none inside a leap month; day 30 on the 29th of a 29-day month."""
    try:
        lunar = LunarDate.from_solar_date(day.year, day.month, day.day)
    except ValueError:
        return []
    if lunar.is_leap_month:
        return []
    pairs = [(lunar.month, lunar.day)]
    if lunar.day == 29:
        try:
            LunarDate(lunar.year, lunar.month, 30).to_solar_date()
        except ValueError:  # a 29-day month: day 30 falls on its 29th
            pairs.append((lunar.month, 30))
    return pairs


def join_dates(day: date, years: int = JOIN_YEARS_BACK) -> dict[date, int]:
    """Join dates whose anniversary falls on `day`, with the anniversary's number."""
    out: dict[date, int] = {}
    for month, dom in solar_days(day):
        for year in range(day.year - years, day.year):
            try:
                out[date(year, month, dom)] = day.year - year
            except ValueError:
                continue
    return out


def dormant_range(day: date, months: int) -> tuple[date, date]:
    """[first, end) of the last-purchase days that turn dormant on `day`: the last
    purchase is more than `months` months before `day` but was not the day before."""
    return add_months(day - timedelta(days=1), -months), add_months(day, -months)


def quarterly_sale_days(day: date, *, base: int, dormant_months: int) -> list[date]:
    """Last-purchase days for which `day` is a continuing quarterly care day
    (day base + 91·k, k >= 1, before `dormant_months` - 1 months after the purchase)."""
    out = []
    n = base + QUARTER_DAYS
    while n - 1 <= 31 * dormant_months:
        sold = sale_day(day, n)
        if day < add_months(sold, dormant_months - 1):
            out.append(sold)
        n += QUARTER_DAYS
    return out


def card_step_due(
    *,
    status: str,
    day: date,
    approved_on: date | None,
    pickup_date: date | None,
    notified_again_on: date | None,
    has_address: bool,
) -> tuple[str, str] | None:
    """(message kind, next status) of the card tracker step due on `day`, or None.

    DOMAIN.md §5: after approval the member is told to come (``card_pickup`` →
    ``notified``, from the day after the approval); a missed appointment (the
    agreed `pickup_date` has passed) brings a second notice (``card_pickup_again``
    → ``notified_again``); when the member still does not come — the agreed day
    and the day after the second notice have both passed — the card is mailed to
    the address on file (``card_mailed`` → ``mailed``; without an address nothing
    happens automatically and the store follows up).
    """
    if status == "approved":
        if approved_on is None or approved_on < day:
            return ("card_pickup", "notified")
    elif status == "notified":
        if pickup_date is not None and pickup_date < day:
            return ("card_pickup_again", "notified_again")
    elif status == "notified_again" and has_address:
        marks = [d for d in (pickup_date, notified_again_on) if d is not None]
        if notified_again_on is not None:
            marks.append(notified_again_on + timedelta(days=1))
        if not marks or max(marks) < day:
            return ("card_mailed", "mailed")
    return None


# --------------------------------------------------------------------------- internals


class _Member(NamedTuple):
    id: int
    phone: str
    name: str
    locale: str | None
    stopped: bool
    preferred_contact: str | None
    store_id: int | None
    assistant_id: int | None
    tier: str
    points: int
    cumulative_spend: Decimal
    wedding_year: int | None
    last_purchase_at: datetime | None


_MEMBER_COLUMNS = (
    Member.id,
    Member.phone,
    Member.name,
    Member.locale,
    Member.stopped,
    Member.preferred_contact,
    Member.store_id,
    Member.assistant_id,
    Member.tier,
    Member.points,
    Member.cumulative_spend,
    Member.wedding_year,
    Member.last_purchase_at,
)


class _Sale(NamedTuple):
    id: int
    member_id: int
    store_id: int
    assistant_id: int | None
    local_date: date


@dataclass(slots=True)
class _Due:
    """One candidate message before rendering."""

    kind: str
    occasion: str
    data: Any = None
    """Kind-specific: a _Sale, a Festival, a Season, a card row, (points, day), years."""
    store_id: int | None = None
    assistant_id: int | None = None
    vip: bool | None = None
    """care_d7 (True) / care_d10 (False): only for members of that class."""
    care: bool = False
    """A per-purchase care message: replaced by the quarterly one in fallback."""
    quarterly: bool = False
    """A continuing quarterly care message: only for members in fallback."""


def _among(session: AsyncSession, column, ids: Sequence[int]):
    """``column IN (ids)``; on PostgreSQL ``column = ANY(:array)``: one bind parameter, so
    one prepared statement whatever the count (2-3× faster for thousands of ids)."""
    if session.bind.dialect.name == "postgresql":
        return column == any_(literal(list(ids), type_=ARRAY(Integer)))
    return col(column).in_(list(ids))


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Plan:
    """The settings and lookups of one planning run (one brand day)."""

    def __init__(self, session: AsyncSession, settings: Settings, day: date):
        self.session = session
        self.settings = settings
        self.day = day
        self.tz: ZoneInfo = settings.brand.tz
        self.msg = settings.messaging
        self.lexicon = settings.messaging.lexicon
        self.templates: dict[tuple[str, str], Template] = {}
        self.stores: dict[int, Store] = {}
        self.assistants: dict[int, Assistant] = {}
        self.week_start = day_start(day - timedelta(days=6), self.tz)
        self.day_end = day_end(day, self.tz)
        self.send_after: dict[str | None, datetime] = {}
        wechat = settings.wechat
        self.wechat_on = wechat.enabled
        self.template_ids = dict(wechat.templates)
        self.sms_provider = settings.sms.provider

    # ----------------------------------------------------------------- sources

    async def date_driven(self) -> dict[int, list[_Due]]:
        """Everything due on the day except the every-member greetings, by member."""
        due: dict[int, list[_Due]] = defaultdict(list)
        await self._purchases(due)
        await self._quarterly_days(due)
        await self._birthdays(due)
        await self._weddings(due)
        await self._join_anniversaries(due)
        await self._dormant(due)
        await self._points_expiry(due)
        await self._cards(due)
        return due

    def every_member(self) -> list[_Due]:
        """The holiday and seasonal greetings due on the day (for every member)."""
        out: list[_Due] = []
        occasions = self.settings.occasions
        festivals = festivals_on(self.day, occasions.festival_rules())
        if festivals:
            f = festivals[0]  # one holiday greeting a day, the first listed festival
            out.append(_Due("holiday", f"{f.code}:{self.day.year}", data=f))
        season = season_start_on(self.day, terms=occasions.season_terms, tz=self.tz)
        if season is not None:
            out.append(_Due("seasonal", f"{season.code}:{self.day.year}", data=season))
        return out

    async def _purchases(self, due: dict[int, list[_Due]]) -> None:
        care = self.msg.care_days
        by_day: dict[date, list[tuple[str, bool | None]]] = defaultdict(list)
        for kind, n, vip in (
            ("points_notice", care.points_notice, None),
            ("care_d3", care.care_d3, None),
            ("care_d7", care.care_d7, True),
            ("care_d10", care.care_d10, False),
            ("care_d30", care.care_d30, None),
            ("care_d120", care.care_d120, None),
        ):
            if n:
                by_day[sale_day(self.day, n)].append((kind, vip))
        if not by_day:
            return
        stmt = select(
            Purchase.id, Purchase.member_id, Purchase.store_id, Purchase.assistant_id,
            Purchase.local_date,
        ).where(col(Purchase.local_date).in_(list(by_day)))  # fmt: skip
        for row in await self.session.exec(stmt):
            sale = _Sale(*row)
            for kind, vip in by_day[sale.local_date]:
                due[sale.member_id].append(
                    _Due(
                        kind,
                        f"purchase:{sale.id}",
                        data=sale,
                        store_id=sale.store_id,
                        assistant_id=sale.assistant_id,
                        vip=vip,
                        care=kind in CARE_KINDS,
                    )
                )

    async def _members_last_bought_on(self, days: Iterable[date]) -> list[tuple[int, date]]:
        """(member id, last purchase day) for members whose last purchase fell on `days`."""
        days = sorted(set(days))
        if not days:
            return []
        lo, hi = day_start(days[0], self.tz), day_end(days[-1], self.tz)
        stmt = select(Member.id, Member.last_purchase_at).where(
            col(Member.last_purchase_at) >= lo, col(Member.last_purchase_at) < hi
        )
        wanted = set(days)
        out = []
        for member_id, at in await self.session.exec(stmt):
            d = local_date(at, self.tz)
            if d in wanted:
                out.append((member_id, d))
        return out

    async def _quarterly_days(self, due: dict[int, list[_Due]]) -> None:
        days = quarterly_sale_days(
            self.day,
            base=self.msg.care_days.care_d120 or 120,
            dormant_months=self.msg.dormant_months,
        )
        for member_id, _last in await self._members_last_bought_on(days):
            due[member_id].append(_Due("care_d120", quarter_occasion(self.day), quarterly=True))

    async def _birthdays(self, due: dict[int, list[_Due]]) -> None:
        conditions = []
        for calendar, pairs in ((SOLAR, solar_days(self.day)), (LUNAR, lunar_days(self.day))):
            for month, days in _by_month(pairs).items():
                conditions.append(
                    and_(
                        Member.birthday_calendar == calendar,
                        Member.birthday_month == month,
                        col(Member.birthday_day).in_(days),
                    )
                )
        if not conditions:
            return
        occasion = str(self.day.year)
        for member_id in await self.session.exec(select(Member.id).where(or_(*conditions))):
            due[member_id].append(_Due("birthday", occasion))

    async def _weddings(self, due: dict[int, list[_Due]]) -> None:
        conditions = [
            and_(Member.wedding_month == month, col(Member.wedding_day).in_(days))
            for month, days in _by_month(solar_days(self.day)).items()
        ]
        stmt = select(Member.id, Member.wedding_year).where(or_(*conditions))
        occasion = str(self.day.year)
        for member_id, year in await self.session.exec(stmt):
            if year is not None and year >= self.day.year:
                continue  # the wedding day itself, or a date in the future: no anniversary
            years = self.day.year - year if year else None
            due[member_id].append(_Due("wedding_anniversary", occasion, data=years))

    async def _join_anniversaries(self, due: dict[int, list[_Due]]) -> None:
        wanted = join_dates(self.day)
        stmt = select(Member.id, Member.join_date).where(col(Member.join_date).in_(list(wanted)))
        occasion = str(self.day.year)
        for member_id, joined in await self.session.exec(stmt):
            due[member_id].append(_Due("join_anniversary", occasion, data=wanted[joined]))

    async def _dormant(self, due: dict[int, list[_Due]]) -> None:
        first, end = dormant_range(self.day, self.msg.dormant_months)
        days = [first + timedelta(days=i) for i in range((end - first).days)]
        for member_id, last in await self._members_last_bought_on(days):
            due[member_id].append(_Due("dormant", f"since:{last.isoformat()}"))

    async def _points_expiry(self, due: dict[int, list[_Due]]) -> None:
        expires = self.day + timedelta(days=self.msg.points_expiry_notice_days)
        stmt = (
            select(PointsLot.member_id, func.sum(PointsLot.remaining))
            .where(PointsLot.remaining > 0, PointsLot.expires_on == expires)
            .group_by(PointsLot.member_id)
        )
        occasion = f"lots:{expires.isoformat()}"
        for member_id, points in await self.session.exec(stmt):
            due[member_id].append(_Due("points_expiry", occasion, data=(int(points), expires)))

    async def _cards(self, due: dict[int, list[_Due]]) -> None:
        for step, app in await _card_steps(self.session, day=self.day, tz=self.tz):
            due[step.member_id].append(
                _Due(
                    step.kind,
                    f"card:{step.application_id}",
                    data=app,
                    store_id=app.store_id,
                    assistant_id=app.assistant_id,
                )
            )

    # ----------------------------------------------------------------- members

    async def lookups(self, store_ids: set, assistant_ids: set) -> None:
        """Load the stores and assistants not yet known to the run."""
        missing = sorted(i for i in store_ids if i is not None and i not in self.stores)
        for chunk in _chunks(missing, CHUNK):
            stmt = select(Store).where(_among(self.session, Store.id, chunk))
            for store in await self.session.exec(stmt):
                self.stores[store.id] = store
        missing = sorted(i for i in assistant_ids if i is not None and i not in self.assistants)
        for chunk in _chunks(missing, CHUNK):
            stmt = select(Assistant).where(_among(self.session, Assistant.id, chunk))
            for assistant in await self.session.exec(stmt):
                self.assistants[assistant.id] = assistant

    async def members_by_ids(self, ids: Sequence[int]) -> list[_Member]:
        stmt = (
            select(*_MEMBER_COLUMNS)
            .where(_among(self.session, Member.id, ids))
            .order_by(col(Member.id))
        )
        return [_Member(*row) for row in await self.session.exec(stmt)]

    async def members_after(self, after: int, limit: int) -> list[_Member]:
        stmt = (
            select(*_MEMBER_COLUMNS)
            .where(col(Member.id) > after)
            .order_by(col(Member.id))
            .limit(limit)
        )
        return [_Member(*row) for row in await self.session.exec(stmt)]

    # ----------------------------------------------------------------- a batch

    async def plan_batch(
        self, members: list[_Member], due: dict[int, list[_Due]], contiguous: bool
    ) -> list[Planned]:
        """Plan the messages of a batch of members (`due`: their candidates)."""
        if not members:
            return []
        ids = [m.id for m in members]
        where_member = (
            (lambda c: and_(c >= ids[0], c <= ids[-1]))
            if contiguous
            else (lambda c: _among(self.session, c, ids))
        )
        vip_index = self.settings.tiers
        for m in members:
            cands = due.get(m.id)
            if cands and any(c.vip is not None for c in cands):
                vip = vip_index.index(m.tier) > 0
                due[m.id] = [c for c in cands if c.vip is None or c.vip == vip]
        await self._apply_fallback(members, due)
        ctx = await _BatchContext.load(self, members, due, where_member)
        out: list[Planned] = []
        for m in members:
            cands = due.get(m.id)
            if cands:
                out.extend(self._plan_member(m, cands, ctx))
        return out

    async def _apply_fallback(self, members: list[_Member], due: dict[int, list[_Due]]) -> None:
        """Quarterly fallback (module docstring): swap per-purchase care for the quarter's."""
        concerned = [m.id for m in members if any(c.care or c.quarterly for c in due.get(m.id, ()))]
        if not concerned:
            return
        in_fallback = await self._in_fallback(concerned)
        occasion = quarter_occasion(self.day)
        for member_id in concerned:
            cands = due[member_id]
            if member_id in in_fallback:
                kept = [c for c in cands if not (c.care or c.quarterly)]
                kept.append(_Due("care_d120", occasion, quarterly=True))
            else:
                kept = [c for c in cands if not c.quarterly]
            due[member_id] = kept

    async def _in_fallback(self, member_ids: Sequence[int]) -> set[int]:
        last: dict[int, date] = {}
        counts: dict[int, int] = defaultdict(int)
        for chunk in _chunks(member_ids, CHUNK):
            stmt = (
                select(Purchase.member_id, func.max(Purchase.local_date))
                .where(
                    _among(self.session, Purchase.member_id, chunk),
                    Purchase.local_date < self.day,
                )
                .group_by(Purchase.member_id)
            )
            for member_id, d in await self.session.exec(stmt):
                last[member_id] = d
            stmt = select(OutboxMessage.member_id, OutboxMessage.planned_on).where(
                _among(self.session, OutboxMessage.member_id, chunk),
                col(OutboxMessage.kind).in_(CARE_KINDS),
                OutboxMessage.status != SUPPRESSED,
                OutboxMessage.planned_on < self.day,
            )
            for member_id, planned_on in await self.session.exec(stmt):
                bought = last.get(member_id)
                if bought is None or planned_on > bought:
                    counts[member_id] += 1
        return {m for m, n in counts.items() if n >= self.msg.quarterly_after}

    # ----------------------------------------------------------------- one member

    def _send_after(self, preferred: str | None) -> datetime:
        found = self.send_after.get(preferred)
        if found is None:
            found = policy.send_after(
                self.day,
                tz=self.tz,
                send_window=self.msg.send_window,
                preferred_contact=preferred,
            )
            self.send_after[preferred] = found
        return found

    def _plan_member(self, m: _Member, cands: list[_Due], ctx: _BatchContext) -> list[Planned]:
        cands = sorted(cands, key=lambda c: (_KIND_ORDER[c.kind], c.occasion))
        locale = m.locale if m.locale in LOCALES else self.settings.brand.locale
        at = self._send_after(m.preferred_contact)
        keys = {(c.kind, c.occasion) for c in cands}
        out: list[Planned] = []
        sendable: list[Planned] = []
        wechat = ctx.wechat.get(m.id) if self.wechat_on else None
        phone_bad = m.id in ctx.bad_phones
        for c in cands:
            store_id, assistant_id, values = self._context(m, c, locale, ctx)
            p = Planned(
                member_id=m.id, phone=m.phone, kind=c.kind, occasion=c.occasion,
                planned_on=self.day, locale=locale, text="", channel="", via="", address="",
                send_after=at, store_id=store_id, assistant_id=assistant_id, status=QUEUED,
            )  # fmt: skip
            out.append(p)
            if m.stopped:
                p.text = self._render(c.kind, locale, values)
                _suppress(p, policy.STOPPED)
                continue
            p.text, violations = self._render_checked(c.kind, locale, values)
            if violations:
                _suppress(p, f"rule:{violations[0].rule}")
                continue
            if not self._route(p, wechat, phone_bad, 0):
                continue
            sendable.append(p)
        if sendable:
            counted = sum(1 for key in ctx.recent.get(m.id, ()) if key not in keys)
            kept, capped = policy.apply_cap(sendable, counted, self.msg.weekly_cap)
            for p in capped:
                _suppress(p, policy.CAPPED)
            # Each customer-service message uses up the window (5 at most): route the kept
            # ones again in cap order (greetings, notices, care) counting those before.
            cs_used = 0
            for p in kept:
                if p.via == "customer_service" and cs_used:
                    self._route(p, wechat, phone_bad, cs_used)
                cs_used += p.via == "customer_service"
        return out

    def _route(
        self, p: Planned, wechat: policy.WeChatIdentityInfo | None, phone_bad: bool, used: int
    ) -> bool:
        """Set the message's channel (`policy.choose_channel`); False when suppressed."""
        choice = self._channel(p, wechat, phone_bad, used)
        if isinstance(choice, policy.Suppressed):
            _suppress(p, choice.reason)
            return False
        p.channel, p.via, p.address = choice.channel, choice.via, choice.address
        return True

    def _channel(
        self, p: Planned, wechat: policy.WeChatIdentityInfo | None, phone_bad: bool, extra: int
    ) -> policy.ChannelChoice | policy.Suppressed:
        if wechat is not None and extra:
            wechat = policy.WeChatIdentityInfo(
                wechat.openid, wechat.active, wechat.last_inbound_at,
                wechat.cs_sent_since_inbound + extra,
            )  # fmt: skip
        return policy.choose_channel(
            kind=p.kind,
            member_stopped=False,
            wechat=wechat,
            phone=p.phone,
            phone_bad=phone_bad,
            at=p.send_after,
            template_ids=self.template_ids,
            sms_provider=self.sms_provider,
        )

    # ----------------------------------------------------------------- texts

    def _template(self, kind: str, locale: str) -> Template:
        key = (kind, locale)
        found = self.templates.get(key)
        if found is None:
            found = render.environment().get_template(f"{locale}/{kind}.txt")
            self.templates[key] = found
        return found

    def _render(self, kind: str, locale: str, values: dict[str, Any]) -> str:
        template = self._template(kind, locale)
        return render.finish(template.render(**render.full_context(kind, locale, values)))

    def _render_checked(
        self, kind: str, locale: str, values: dict[str, Any]
    ) -> tuple[str, list[message_rules.Violation]]:
        """`message_rules.render_checked`, with the template looked up once per run."""
        text = self._render(kind, locale, values)
        violations = message_rules.check(
            kind,
            text,
            locale=locale,
            lexicon=self.lexicon,
            store_name=values.get("store_name"),
            assistant_name=values.get("assistant_name"),
            exempt=message_rules.data_phrases(values, locale),
        )
        return text, violations

    def _signer(self, m: _Member, c: _Due) -> tuple[int | None, int | None, str, str]:
        """(store id, assistant id, store name, assistant name) signing the message."""
        store_id = c.store_id if c.store_id is not None else m.store_id
        assistant = self.assistants.get(c.assistant_id) if c.assistant_id else None
        if assistant is None or not assistant.active:
            assistant = self.assistants.get(m.assistant_id) if m.assistant_id else None
            if assistant is not None and not assistant.active:
                assistant = None
        store = self.stores.get(store_id) if store_id is not None else None
        store_name = store.name if store is not None else self.settings.brand.name
        return (
            store_id,
            assistant.id if assistant else None,
            store_name,
            assistant.name if assistant else "",
        )

    def _context(
        self, m: _Member, c: _Due, locale: str, ctx: _BatchContext
    ) -> tuple[int | None, int | None, dict[str, Any]]:
        store_id, assistant_id, store_name, assistant_name = self._signer(m, c)
        v: dict[str, Any] = {
            "member_name": m.name,
            "store_name": store_name,
            "assistant_name": assistant_name,
        }
        kind = c.kind
        if kind == "points_notice":
            sale: _Sale = c.data
            reward, missing = self._next_reward(m.points)
            v.update(
                purchase_date=sale.local_date,
                purchase_store=store_name,
                items=ctx.items.get(sale.id, []),
                points=m.points,
                cumulative_spend=m.cumulative_spend,
                missing_for_reward=missing,
                reward_name=_local_name(reward, locale) if reward else None,
            )  # fmt: skip
        elif kind in ("care_d3", "care_d7", "care_d10") and c.data is not None:
            sale = c.data
            v["items"] = ctx.items.get(sale.id, [])
            if KINDS[kind].care_tips:
                v["care_tips"] = render.care_tips(ctx.category.get(sale.id), locale)
        elif kind == "points_expiry":
            points, expires = c.data
            v.update(expiring_points=points, expiry_date=expires, points=m.points)
        elif kind in ("card_pickup", "card_pickup_again", "card_mailed"):
            level = self.settings.tiers.find(c.data.tier)
            v["tier_name"] = _local_name(level, locale) if level else c.data.tier
            if kind != "card_mailed":
                v["pickup_store"] = store_name
        elif kind == "holiday":
            v.update(festival=c.data.code, festival_name=c.data.name(locale))
        elif kind == "seasonal":
            v.update(season=c.data.season, season_name=c.data.name(locale))
        elif kind in ("wedding_anniversary", "join_anniversary"):
            v["years"] = c.data
        return store_id, assistant_id, v

    def _next_reward(self, points: int):
        """(reward, points missing): the cheapest reward the balance does not cover;
        when it covers them all, the dearest one with 0 missing; (None, None) if none."""
        catalogue = sorted(self.settings.rewards.catalogue, key=lambda r: r.cost)
        if not catalogue:
            return None, None
        for reward in catalogue:
            if reward.cost > points:
                return reward, reward.cost - points
        return catalogue[-1], 0


def _local_name(thing: Any, locale: str) -> str:
    """A reward's or tier level's name in `locale` (English falls back to the Chinese)."""
    return (thing.name_en or thing.name) if locale == "en" else thing.name


def _suppress(p: Planned, reason: str) -> None:
    """Suppressed: recorded with its reason and no channel (it will not go anywhere)."""
    p.status = SUPPRESSED
    p.reason = reason
    p.channel = p.via = p.address = ""


def _by_month(pairs: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for month, day in pairs:
        out[month].append(day)
    return out


@dataclass(slots=True)
class _BatchContext:
    """What the messages of a batch of members need, read in bulk."""

    wechat: dict[int, policy.WeChatIdentityInfo] = field(default_factory=dict)
    bad_phones: set[int] = field(default_factory=set)
    recent: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    """(kind, occasion) of the member's messages counted by the weekly cap."""
    items: dict[int, list[str]] = field(default_factory=dict)
    category: dict[int, str] = field(default_factory=dict)
    """The care-tips category of a purchase: its dearest item's category or name."""

    @classmethod
    async def load(
        cls, plan: _Plan, members: list[_Member], due: dict[int, list[_Due]], where_member
    ) -> _BatchContext:
        ctx = cls()
        session = plan.session
        phone_of = {m.id: m.phone for m in members}
        # Identities: the WeChat openid (active first, then the latest inbound) and bad numbers.
        inbound: dict[int, tuple[str, bool, datetime | None]] = {}
        stmt = select(
            Identity.member_id, Identity.channel, Identity.address, Identity.active,
            Identity.bad, Identity.last_inbound_at,
        ).where(where_member(col(Identity.member_id)))  # fmt: skip
        for member_id, channel, address, active, bad, last_in in await session.exec(stmt):
            if member_id not in phone_of:
                continue
            if channel == "sms":
                if bad and address == phone_of[member_id]:
                    ctx.bad_phones.add(member_id)
            elif channel == "wechat":
                old = inbound.get(member_id)
                if old is None or _identity_rank(active, last_in) > _identity_rank(*old[1:]):
                    inbound[member_id] = (address, active, last_in)
        # The member's recent messages: the weekly cap and the customer-service count.
        cs_count: dict[int, int] = defaultdict(int)
        stmt = select(
            OutboxMessage.member_id, OutboxMessage.kind, OutboxMessage.occasion,
            OutboxMessage.via, OutboxMessage.send_after,
        ).where(
            where_member(col(OutboxMessage.member_id)),
            col(OutboxMessage.send_after) >= plan.week_start,
            col(OutboxMessage.send_after) < plan.day_end,
            OutboxMessage.status != SUPPRESSED,
        )  # fmt: skip
        recent: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for member_id, kind, occasion, via, sent_at in await session.exec(stmt):
            recent[member_id].append((kind, occasion))
            seen = inbound.get(member_id)
            if via == "customer_service" and seen and seen[2] and sent_at >= seen[2]:
                cs_count[member_id] += 1
        ctx.recent = recent
        for member_id, (openid, active, last_in) in inbound.items():
            ctx.wechat[member_id] = policy.WeChatIdentityInfo(
                openid, active, last_in, cs_count.get(member_id, 0)
            )
        # Stores, assistants and purchase items.
        store_ids, assistant_ids, sale_ids = set(), set(), set()
        for m in members:
            store_ids.add(m.store_id)
            assistant_ids.add(m.assistant_id)
            for c in due.get(m.id, ()):
                store_ids.add(c.store_id)
                assistant_ids.add(c.assistant_id)
                if isinstance(c.data, _Sale):
                    sale_ids.add(c.data.id)
        await plan.lookups(store_ids, assistant_ids)
        if sale_ids:
            best: dict[int, Decimal] = {}
            for chunk in _chunks(sorted(sale_ids), CHUNK):
                stmt = (
                    select(
                        PurchaseItem.purchase_id, PurchaseItem.name, PurchaseItem.category,
                        PurchaseItem.amount,
                    )
                    .where(_among(session, PurchaseItem.purchase_id, chunk))
                    .order_by(col(PurchaseItem.id))
                )  # fmt: skip
                for purchase_id, name, category, amount in await session.exec(stmt):
                    names = ctx.items.setdefault(purchase_id, [])
                    if name and name not in names:
                        names.append(name)
                    if purchase_id not in best or amount > best[purchase_id]:
                        best[purchase_id] = amount
                        known = render.care_category(category) != "other"
                        ctx.category[purchase_id] = category if known else (name or category)
        return ctx


def _identity_rank(active: bool, last_inbound_at: datetime | None) -> tuple[bool, float]:
    return (active, last_inbound_at.timestamp() if last_inbound_at else 0.0)


# --------------------------------------------------------------------------- card steps


class _CardApp(NamedTuple):
    id: int
    member_id: int
    tier: str
    status: str
    store_id: int | None
    assistant_id: int | None
    pickup_date: date | None
    mail_address: str | None


async def _card_steps(
    session: AsyncSession, *, day: date, tz: ZoneInfo
) -> list[tuple[CardStep, _CardApp]]:
    stmt = select(
        CardApplication.id, CardApplication.member_id, CardApplication.tier,
        CardApplication.status, CardApplication.store_id, CardApplication.assistant_id,
        CardApplication.pickup_date, CardApplication.mail_address,
    ).where(col(CardApplication.status).in_(_CARD_READY))  # fmt: skip
    apps = [_CardApp(*row) for row in await session.exec(stmt)]
    if not apps:
        return []
    approved: dict[int, date] = {}
    again: dict[int, date] = {}
    addresses: dict[int, str | None] = {}
    for chunk in _chunks([a.id for a in apps], CHUNK):
        stmt = select(CardEvent.application_id, CardEvent.to_status, CardEvent.at).where(
            _among(session, CardEvent.application_id, chunk),
            col(CardEvent.to_status).in_(("approved", "notified_again")),
        )
        for app_id, to_status, at in await session.exec(stmt):
            target = approved if to_status == "approved" else again
            d = local_date(at, tz)
            if app_id not in target or d > target[app_id]:
                target[app_id] = d
    mailing = sorted({a.member_id for a in apps if a.status == "notified_again"})
    for chunk in _chunks(mailing, CHUNK):
        stmt = select(Member.id, Member.address).where(_among(session, Member.id, chunk))
        addresses.update(dict(list(await session.exec(stmt))))
    out = []
    for a in sorted(apps, key=lambda a: a.id):
        step = card_step_due(
            status=a.status,
            day=day,
            approved_on=approved.get(a.id),
            pickup_date=a.pickup_date,
            notified_again_on=again.get(a.id),
            has_address=bool((a.mail_address or addresses.get(a.member_id) or "").strip()),
        )
        if step is not None:
            out.append((CardStep(a.id, a.member_id, step[0], step[1]), a))
    return out


async def due_card_steps(session: AsyncSession, *, day: date, tz: ZoneInfo) -> list[CardStep]:
    """The card-tracker steps due on brand day `day` (`card_step_due`), oldest application first.

    The daily job plans the day first (the planner announces these steps), then
    moves each application with `models.cards.advance(..., to_status=step.to_status)`.
    """
    return [step for step, _app in await _card_steps(session, day=day, tz=tz)]


# --------------------------------------------------------------------------- entry points


async def iter_plan(
    session: AsyncSession, *, settings: Settings, day: date, chunk_size: int = 2000
) -> AsyncIterator[list[Planned]]:
    """The messages due on `day`, a batch of members at a time (see `plan_day`).

    Memory stays bounded by `chunk_size` members plus the day's date-driven
    candidates, also on holiday and seasonal days (every member). Reads only.
    """
    plan = _Plan(session, settings, day)
    due = await plan.date_driven()
    everyone = plan.every_member()
    if everyone:
        after = 0
        while True:
            members = await plan.members_after(after, chunk_size)
            if not members:
                break
            after = members[-1].id
            batch = {m.id: [*due.pop(m.id, ()), *everyone] for m in members}
            yield await plan.plan_batch(members, batch, contiguous=True)
        return
    ids = sorted(due)
    for chunk in _chunks(ids, chunk_size):
        members = await plan.members_by_ids(chunk)
        batch = {m.id: due.pop(m.id) for m in members}
        yield await plan.plan_batch(members, batch, contiguous=False)


async def plan_day(session: AsyncSession, *, settings: Settings, day: date) -> list[Planned]:
    """Every proactive message due on brand day `day` (module docstring), in member order.

    A pure function of the data and `day`: no clock read, nothing written. Each
    message is ``queued`` with its channel and send time, or ``suppressed`` with
    the reason. Messages already in the outbox are included (see `pending_only`).
    """
    out: list[Planned] = []
    async for batch in iter_plan(session, settings=settings, day=day):
        out.extend(batch)
    return out


async def pending_only(session: AsyncSession, planned: Sequence[Planned]) -> list[Planned]:
    """`planned` without the messages whose (member, kind, occasion) is already in the outbox."""
    existing: set[tuple[int, str, str]] = set()
    ordered = sorted(planned, key=lambda p: p.member_id)
    for chunk in _chunks(ordered, CHUNK):
        ids = sorted({p.member_id for p in chunk})
        occasions = sorted({p.occasion for p in chunk})
        stmt = select(OutboxMessage.member_id, OutboxMessage.kind, OutboxMessage.occasion).where(
            _among(session, OutboxMessage.member_id, ids),
            col(OutboxMessage.occasion).in_(occasions),
        )
        existing.update(tuple(row) for row in await session.exec(stmt))
    return [p for p in planned if p.key not in existing]


async def save_plan(
    session: AsyncSession, *, planned: Iterable[Planned], now: datetime, chunk_size: int = CHUNK
) -> SaveResult:
    """Insert the planned messages; (member, kind, occasion) already present → skipped.

    ``INSERT … ON CONFLICT DO NOTHING RETURNING`` in batches, rows in key order
    (so two concurrent runs wait on each other instead of deadlocking), and one
    ``outbox_events`` row (planned → queued / suppressed) per inserted message.
    On PostgreSQL each batch goes as column arrays through one ``INSERT … SELECT
    FROM unnest(…)`` (several times faster than executemany); on SQLite as an
    executemany. Never commits.
    """
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    rows = sorted(planned, key=lambda p: p.key)
    pg = session.bind.dialect.name == "postgresql"
    insert_batch = _insert_pg if pg else _insert_generic
    inserted = suppressed = 0
    for chunk in _chunks(rows, chunk_size * 5 if pg else chunk_size):
        new = await insert_batch(session, chunk, now)
        if not new:
            continue
        inserted += len(new)
        suppressed += sum(1 for _id, status, _reason in new if status == SUPPRESSED)
        await _insert_events(session, new, now, pg)
    return SaveResult(inserted=inserted, already=len(rows) - inserted, suppressed=suppressed)


_PG_TYPES = {
    "member_id": "integer", "kind": "varchar", "occasion": "varchar", "planned_on": "date",
    "store_id": "integer", "assistant_id": "integer", "locale": "varchar", "text": "varchar",
    "channel": "varchar", "via": "varchar", "address": "varchar", "status": "varchar",
    "reason": "varchar", "send_after": "timestamptz",
}  # fmt: skip
_PG_INSERT = text(
    f"INSERT INTO outbox ({', '.join(_OUTBOX_FIELDS)}, attempts, created_at, updated_at) "
    f"SELECT {', '.join(_OUTBOX_FIELDS)}, 0, :now, :now FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_PG_TYPES[c]}[])" for c in _OUTBOX_FIELDS)
    + f") WITH ORDINALITY AS u({', '.join(_OUTBOX_FIELDS)}, n) ORDER BY n "
    "ON CONFLICT (member_id, kind, occasion) DO NOTHING RETURNING id, status, reason"
)
_PG_EVENTS = text(
    "INSERT INTO outbox_events (message_id, from_status, to_status, at, reason) "
    "SELECT id, :from_status, status, :at, reason FROM unnest("
    "CAST(:ids AS integer[]), CAST(:statuses AS varchar[]), CAST(:reasons AS varchar[])"
    ") AS u(id, status, reason)"
)


async def _insert_pg(session: AsyncSession, chunk: Sequence[Planned], now: datetime) -> list:
    params: dict[str, Any] = {c: [getattr(p, c) for p in chunk] for c in _OUTBOX_FIELDS}
    params["now"] = now
    return list(await session.exec(_PG_INSERT, params=params))


async def _insert_generic(session: AsyncSession, chunk: Sequence[Planned], now: datetime) -> list:
    table = OutboxMessage.__table__
    stmt = (
        insert_ignore(session.bind.dialect.name, table)
        .on_conflict_do_nothing(index_elements=["member_id", "kind", "occasion"])
        .returning(table.c.id, table.c.status, table.c.reason)
    )
    stamps = {"attempts": 0, "created_at": now, "updated_at": now}
    values = [{**{c: getattr(p, c) for c in _OUTBOX_FIELDS}, **stamps} for p in chunk]
    return list(await session.exec(stmt, params=values))


async def _insert_events(session: AsyncSession, new: list, now: datetime, pg: bool) -> None:
    """The first event of each new message: planned → its status (as scheduler.outbox does)."""
    if pg:
        params = {
            "ids": [r[0] for r in new],
            "statuses": [r[1] for r in new],
            "reasons": [r[2] for r in new],
            "from_status": FIRST_EVENT_FROM,
            "at": now,
        }
        await session.exec(_PG_EVENTS, params=params)
        return
    events = [
        {
            "message_id": mid,
            "from_status": FIRST_EVENT_FROM,
            "to_status": st,
            "at": now,
            "reason": why,
        }
        for mid, st, why in new
    ]
    await session.exec(insert(OutboxEvent.__table__), params=events)
