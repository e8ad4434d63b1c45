"""The values the planner's parts hand each other, and the state of one planning run.

`Planned`, `SaveResult` and `CardStep` are public (re-exported by
`scheduler.plan.planner`); `Due`, `MemberRow`, `Sale` and `CardApp` are the
planner's internal rows; `PlanDay` holds the settings, derived values and
caches of one run (one brand day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from jinja2 import Template
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import day_end, day_start
from models.outbox.states import SUPPRESSED
from models.settings import Settings
from models.tables.members import Member


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
    dormant_for: datetime | None = None
    """``dormant`` only: the member's last purchase it greets after (`save_plan` records it
    on the member, ``members.dormant_noted_at``, so it is not due again)."""

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.member_id, self.kind, self.occasion)


def suppress(p: Planned, reason: str) -> None:
    """Suppressed: recorded with its reason and no channel (it will not go anywhere)."""
    p.status = SUPPRESSED
    p.reason = reason
    p.channel = p.via = p.address = ""


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


class MemberRow(NamedTuple):
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


MEMBER_COLUMNS = tuple(getattr(Member, name) for name in MemberRow._fields)


class Sale(NamedTuple):
    id: int
    member_id: int
    store_id: int
    assistant_id: int | None
    local_date: date


class CardApp(NamedTuple):
    id: int
    member_id: int
    tier: str
    status: str
    store_id: int | None
    assistant_id: int | None
    pickup_date: date | None
    mail_address: str | None


class StoreRow(NamedTuple):
    id: int
    name: str


class AssistantRow(NamedTuple):
    id: int
    name: str
    active: bool


@dataclass(slots=True)
class Due:
    """One candidate message before rendering."""

    kind: str
    occasion: str
    data: Any = None
    """Kind-specific: a Sale, a Festival, a Season, a CardApp, (points, day), years, the
    last purchase time (dormant)."""
    store_id: int | None = None
    assistant_id: int | None = None
    vip: bool | None = None
    """care_d7 (True) / care_d10 (False): only for members of that class."""
    care: bool = False
    """A per-purchase care message: replaced by the quarterly one in fallback."""
    quarterly: bool = False
    """A continuing quarterly care message: only for members in fallback."""


class PlanDay:
    """The settings, derived values and caches of one planning run (one brand day)."""

    def __init__(self, session: AsyncSession, settings: Settings, day: date):
        self.session = session
        self.pg = session.bind.dialect.name == "postgresql"
        self.settings = settings
        self.day = day
        self.tz: ZoneInfo = settings.brand.tz
        self.msg = settings.messaging
        self.lexicon = settings.messaging.lexicon
        self.templates: dict[tuple[str, str], Template] = {}
        self.stores: dict[int, StoreRow] = {}
        self.assistants: dict[int, AssistantRow] = {}
        self.week_start = day_start(day - timedelta(days=6), self.tz)
        self.day_end = day_end(day, self.tz)
        self.send_after: dict[str | None, datetime] = {}
        wechat = settings.wechat
        self.wechat_on = wechat.enabled
        self.template_ids = dict(wechat.templates)
        self.sms_provider = settings.sms.provider
