"""What the sender checks at send time, and where a message goes when WeChat refuses it.

`read_recipients` reads, for a pass's messages, what the checks need of their
members (stopped, preferred time, phone, bad and inactive identities);
`send_time_verdict` applies the rules of step 2 of `scheduler.send.sender`;
`send_time_channel` chooses the channel again at send time (the window may have
opened or closed since planning); `next_channel` picks the channel after WeChat
could not reach the member.
Pure functions of their arguments, except the one read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import local_date
from models.kinds import GREETING_KINDS
from models.outbox.states import DELIVERED, SENT
from models.tables.members import Identity, Member
from models.tables.outbox import OutboxMessage
from scheduler.policy import (
    ChannelChoice,
    Suppressed,
    WeChatIdentityInfo,
    choose_channel,
    next_allowed,
)
from scheduler.send.transports import Permanent, Transports


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
    wechat: WeChatIdentityInfo | None = None
    """The member's WeChat identity (active first, then the latest message), with the
    customer-service messages sent since the member's last message."""


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
    wechat = await _wechat_identities(session, member_ids)
    return {
        mid: Recipient(stopped, preferred, phone, bad, inactive, wechat.get(mid))
        for mid, stopped, preferred, phone in members
    }


async def _wechat_identities(
    session: AsyncSession, member_ids: list[int]
) -> dict[int, WeChatIdentityInfo]:
    """Each member's WeChat identity (active first, then the latest message) and the
    customer-service messages sent to them since that message (MESSAGING.md: at most 5)."""
    rows = (
        await session.exec(
            select(
                Identity.member_id, Identity.address, Identity.active, Identity.last_inbound_at
            ).where(Identity.channel == "wechat", Identity.member_id.in_(member_ids))
        )
    ).all()
    best: dict[int, tuple[str, bool, datetime | None]] = {}
    for mid, openid, active, last_in in rows:
        rank = (active, last_in.timestamp() if last_in else 0.0)
        old = best.get(mid)
        if old is None or rank > (old[1], old[2].timestamp() if old[2] else 0.0):
            best[mid] = (openid, active, last_in)
    opened = {mid: v[2] for mid, v in best.items() if v[2] is not None}
    used: Counter[int] = Counter()
    if opened:
        sent = await session.exec(
            select(OutboxMessage.member_id, OutboxMessage.updated_at).where(
                OutboxMessage.member_id.in_(sorted(opened)),
                OutboxMessage.via == "customer_service",
                OutboxMessage.status.in_((SENT, DELIVERED)),
                OutboxMessage.updated_at >= min(opened.values()),
            )
        )
        for mid, at in sent.all():
            if at >= opened[mid]:
                used[mid] += 1
    return {
        mid: WeChatIdentityInfo(openid, active, last_in, used[mid])
        for mid, (openid, active, last_in) in best.items()
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
    """The next channel after WeChat could not reach the member (`scheduler.send.sender`):
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
    choice = _choose(m, who, wechat, now=now, transports=transports)
    return choice if isinstance(choice, ChannelChoice) else None


def _choose(
    m: OutboxMessage,
    who: Recipient,
    wechat: WeChatIdentityInfo | None,
    *,
    now: datetime,
    transports: Transports,
) -> ChannelChoice | Suppressed:
    """`policy.choose_channel` for `m` with the providers this sender has."""
    assert transports.sms is not None
    return choose_channel(
        kind=m.kind,
        member_stopped=who.stopped,
        wechat=wechat,
        phone=who.phone,
        phone_bad=("sms", who.phone) in who.bad,
        at=now,
        template_ids=getattr(transports.wechat_template, "templates", None),
        sms_provider="console" if transports.sms.via == "console" else "twilio",
    )


@dataclass
class WindowUse:
    """Customer-service messages this pass decided to send, by member: counted with the
    ones already sent, so two of one member's messages in a pass share the 5."""

    taken: Counter[int] = field(default_factory=Counter)


def send_time_channel(
    m: OutboxMessage, who: Recipient, *, now: datetime, transports: Transports, use: WindowUse
) -> ChannelChoice | Suppressed | None:
    """The channel `m` takes now (MESSAGING.md "Channel choice", `policy.choose_channel`
    with the window as it is at send time): None to send it as planned, else the other
    channel or the suppression. Only a message not tried yet is re-chosen (one re-routed
    after WeChat refused it stays where it was sent). A customer-service choice is
    counted against the member's 5 at once (`use`)."""
    if m.attempts or m.channel not in ("sms", "wechat") or transports.sms is None:
        return None
    wechat = who.wechat
    if transports.wechat_cs is None and transports.wechat_template is None:
        wechat = None
    elif wechat is not None and use.taken[m.member_id]:
        wechat = WeChatIdentityInfo(
            wechat.openid, wechat.active, wechat.last_inbound_at,
            wechat.cs_sent_since_inbound + use.taken[m.member_id],
        )  # fmt: skip
    choice = _choose(m, who, wechat, now=now, transports=transports)
    if isinstance(choice, ChannelChoice):
        if choice.via == "customer_service" and transports.wechat_cs is None:
            return None
        if choice.via == "customer_service":
            use.taken[m.member_id] += 1
        if (choice.channel, choice.via, choice.address) == (m.channel, m.via, m.address):
            return None
    return choice
