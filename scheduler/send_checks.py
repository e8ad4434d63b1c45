"""What the sender checks at send time, and where a message goes when WeChat refuses it.

`read_recipients` reads, for a pass's messages, what the checks need of their
members (stopped, preferred time, phone, bad and inactive identities);
`send_time_verdict` applies the rules of step 2 of `scheduler.sender`;
`next_channel` picks the channel after WeChat could not reach the member.
Pure functions of their arguments, except the one read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import local_date
from models.tables import Identity, Member, OutboxMessage
from scheduler.kinds import GREETING_KINDS
from scheduler.policy import ChannelChoice, WeChatIdentityInfo, choose_channel, next_allowed
from scheduler.transports import Permanent, Transports


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the send-time re-checks need to know of a message's member."""

    stopped: bool
    preferred_contact: str | None
    phone: str
    bad: frozenset[tuple[str, str]]
    """(channel, address) identities marked bad, among the pass's addresses and phones."""
    inactive: frozenset[tuple[str, str]]
    """… and those no longer active (e.g. an openid that unfollowed)."""


async def read_recipients(
    session: AsyncSession, messages: list[OutboxMessage]
) -> dict[int, Recipient]:
    """The `Recipient` of each member of `messages`, by member id (absent: no member row)."""
    member_ids = sorted({m.member_id for m in messages})
    if not member_ids:
        return {}
    members = (
        await session.exec(
            select(Member.id, Member.stopped, Member.preferred_contact, Member.phone).where(
                Member.id.in_(member_ids)
            )
        )
    ).all()
    addresses = {m.address for m in messages} | {row[3] for row in members}
    flags = (
        await session.exec(
            select(Identity.channel, Identity.address, Identity.bad, Identity.active).where(
                Identity.address.in_(sorted(addresses))
            )
        )
    ).all()
    bad = frozenset((c, a) for c, a, is_bad, _ in flags if is_bad)
    inactive = frozenset((c, a) for c, a, _, active in flags if not active)
    return {
        mid: Recipient(stopped, preferred, phone, bad, inactive)
        for mid, stopped, preferred, phone in members
    }


@dataclass(frozen=True, slots=True)
class Suppress:
    reason: str


@dataclass(frozen=True, slots=True)
class Defer:
    until: datetime
    """The next allowed moment (quiet hours)."""


def send_time_verdict(
    m: OutboxMessage, who: Recipient, *, now: datetime, tz: ZoneInfo, send_window: str
) -> Suppress | Defer | None:
    """None when `m` may go now; else suppressed (stopped since planning, its number
    marked bad since, a greeting whose day has passed or whose next allowed moment is on
    another day) or deferred to the next allowed moment (quiet hours)."""
    if who.stopped:
        return Suppress("stopped")
    if m.channel == "sms" and ("sms", m.address) in who.bad:
        return Suppress("bad_number")
    if m.kind in GREETING_KINDS and local_date(now, tz) > m.planned_on:
        return Suppress("too_late")
    allowed = next_allowed(
        now, tz=tz, send_window=send_window, preferred_contact=who.preferred_contact
    )
    if allowed <= now:
        return None
    if m.kind in GREETING_KINDS and local_date(allowed, tz) != m.planned_on:
        return Suppress("too_late")
    return Defer(allowed)


def next_channel(
    m: OutboxMessage, who: Recipient, exc: Permanent, now: datetime, transports: Transports
) -> ChannelChoice | None:
    """The next channel after WeChat could not reach the member (`scheduler.sender`):
    customer service → a template message for a service notice when one is configured,
    else SMS; template → SMS; never back to WeChat. None: no channel left."""
    if m.channel != "wechat" or transports.sms is None:
        return None
    wechat = None
    template = transports.wechat_template
    if m.via == "customer_service" and exc.code not in ("43004",) and template is not None:
        wechat = WeChatIdentityInfo(
            openid=m.address, active=("wechat", m.address) not in who.inactive
        )
    choice = choose_channel(
        kind=m.kind,
        member_stopped=who.stopped,
        wechat=wechat,
        phone=who.phone,
        phone_bad=("sms", who.phone) in who.bad,
        at=now,
        template_ids=getattr(template, "templates", None),
        sms_provider="console" if transports.sms.via == "console" else "twilio",
    )
    return choice if isinstance(choice, ChannelChoice) else None
