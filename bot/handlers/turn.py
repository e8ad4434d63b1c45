"""What every handler receives: one inbound message with everything resolved once.

`bot.bot.MemberBot` opens the transaction, finds the member behind the sender
and builds a `Turn`; the handlers (one module per intent, each with a `ROUTES`
list, wired together in `bot.bot`) read and change data through the domain
functions with `turn.session` and answer with `turn.reply(template, …)`.
Handlers never commit (one inbound = one transaction) and never send anything
themselves: an SMS that must leave (a binding code) is queued on
`turn.outgoing` and sent by `MemberBot` after the commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.conversation import Inbound, Reply
from bot.router import Intent, Match
from models.locale_format import local_name
from models.rules import LoyaltyRules, Reward
from models.tables.conversation import PendingAction
from models.tables.members import Identity, Member, Store
from scheduler.text import render

if TYPE_CHECKING:
    from models.settings import Settings

CONFIRM_WINDOW_MINUTES = 10
"""How long a redemption or a mailing request waits for 确认/CONFIRM (CONTRACT.md)."""


@dataclass(slots=True)
class OutgoingSms:
    """An SMS to send once the transaction has committed (see `bot.handlers.bind`)."""

    to: str
    body: str
    bind_code_id: int


@dataclass(slots=True)
class Turn:
    session: AsyncSession
    settings: Settings
    rules: LoyaltyRules
    """`settings.loyalty`, built once by `MemberBot` (the property builds a new object)."""
    inbound: Inbound
    now: datetime
    today: date
    """The brand's day of `now`."""
    locale: str
    member: Member | None
    """The member behind the sender, or None (unbound openid, unknown phone)."""
    identity: Identity | None = None
    """The sender's WeChat identity row (WeChat only)."""
    pending: PendingAction | None = None
    pending_read: bool = False
    """True when `pending` is the sender's pending action as read with the sender in this
    transaction (`bot.handlers.pending.current` then needs no query when there is none)."""
    sender_locked: bool = False
    """The identity row is locked for this transaction (`MemberBot` does it before a change)."""
    outgoing: list[OutgoingSms] = field(default_factory=list)
    pending_created: bool = False
    """Set by a handler that stored a new pending action (so no "cancelled" note is added)."""

    @property
    def channel(self) -> str:
        return self.inbound.channel

    @property
    def is_wechat(self) -> bool:
        return self.inbound.channel == "wechat"

    @property
    def tz(self) -> ZoneInfo:
        return self.settings.brand.tz

    @property
    def actor(self) -> str:
        """How card events and consent records name a change the member made."""
        return f"member:{self.inbound.channel}"

    def text(self, template: str, /, **ctx) -> str:
        return render(template, self.locale, brand=self.settings.brand.name, **ctx)

    def reply(self, template: str, /, *effects: str, **ctx) -> Reply:
        return Reply(self.text(template, **ctx), tuple(effects))

    def tier_name(self, code: str | None) -> str:
        """The name of the tier `code` in the reply's language."""
        return local_name(self.rules.tiers.level(code), self.locale)

    def reward_name(self, reward: Reward) -> str:
        """`reward`'s name in the reply's language."""
        return local_name(reward, self.locale)

    async def store(self) -> Store | None:
        if self.member is None or self.member.store_id is None:
            return None
        return await self.session.get(Store, self.member.store_id)


Handler = Callable[[Turn, Match], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Route:
    """One intent and its handler. `needs_member`: only a known member gets the handler;
    anyone else gets how to bind (WeChat) or how to join (SMS)."""

    intent: Intent
    handler: Handler
    needs_member: bool = True
