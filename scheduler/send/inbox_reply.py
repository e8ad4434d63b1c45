"""How an assistant's answer in the inbox reaches the member (`POST /api/inbox/{id}/reply`,
the console's reply box; docs/staff-console.md "Inbox").

An answer is not a proactive message: it goes out at once, whatever the hour, the
weekly cap or the greeting rules, and a member who stopped proactive messages still
gets it (they asked). Only the channel is chosen (MESSAGING.md "WeChat"):

1. a WeChat customer-service message while the window the member's last message
   opened is open (48 hours) and its allowance lasts (5 messages: the outbox's
   customer-service messages and the inbox's answers sent since that message both
   count) — `scheduler.policy.cs_window_open`;
2. else an SMS to the member's number (or the unknown sender's number), unless the
   provider marked it bad;
3. else nothing can carry it (`NoChannel`, 409): e.g. an unbound WeChat user whose
   window has closed.

WeChat refusing because the window closed after all (45015 / 45047) or the member
stopped following (43004) falls back to the SMS when there is a number. Any other
failure is reported (`Delivery.status` ``failed`` with the reason): the answer is
kept in the thread as failed and the assistant can send it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import inbox
from models.db import transaction
from models.errors import Conflict
from models.inbox import ANSWERED, ASSISTANT, CLOSED, FAILED, SENT
from models.settings import Settings
from models.staff_queries import Scope
from models.tables.inbox import Conversation, ConversationMessage
from models.tables.members import Identity, Member
from scheduler.greeting_checks import wechat_identity
from scheduler.policy import ChannelChoice, WeChatIdentityInfo, cs_window_open
from scheduler.send.providers import (
    NOT_FOLLOWING,
    OUT_OF_WINDOW,
    SmsSender,
    SmsSendError,
    WeChatApiError,
    WeChatSender,
)

log = logging.getLogger("memberbot.inbox")

CUSTOMER_SERVICE = "customer_service"


class NoChannel(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "no channel reaches this sender now: the WeChat window is closed and there is "
            "no phone number to text",
            "channel",
        )


@dataclass(frozen=True)
class Delivery:
    channel: str
    via: str
    status: str
    """sent | failed"""
    error: str | None = None


async def _wechat(
    session: AsyncSession, conversation: Conversation, member: Member | None
) -> WeChatIdentityInfo | None:
    """The sender's WeChat identity with the customer-service messages used since their
    last message: the outbox's (`wechat_identity`, a member's) and the inbox's answers."""
    if member is not None:
        info = await wechat_identity(session, member.id)
    elif conversation.channel == "wechat":
        stmt = select(Identity.address, Identity.active, Identity.last_inbound_at).where(
            Identity.channel == "wechat", Identity.address == conversation.address
        )
        row = (await session.exec(stmt)).first()
        info = WeChatIdentityInfo(*row) if row is not None else None
    else:
        return None
    if info is None or info.last_inbound_at is None:
        return info
    answers = (
        select(func.count())
        .select_from(ConversationMessage)
        .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
        .where(
            Conversation.thread_key == conversation.thread_key,
            ConversationMessage.author == ASSISTANT,
            ConversationMessage.via == CUSTOMER_SERVICE,
            ConversationMessage.status == SENT,
            col(ConversationMessage.at) >= info.last_inbound_at,
        )
    )
    used = int((await session.exec(answers)).one())
    return replace(info, cs_sent_since_inbound=info.cs_sent_since_inbound + used)


async def _phone(
    session: AsyncSession, conversation: Conversation, member: Member | None
) -> str | None:
    phone = member.phone if member is not None else None
    if phone is None and conversation.channel == "sms":
        phone = conversation.address
    if not phone:
        return None
    stmt = select(Identity.id).where(
        Identity.channel == "sms", Identity.address == phone, col(Identity.bad)
    )
    return None if (await session.exec(stmt)).first() is not None else phone


async def routes(
    session: AsyncSession,
    conversation: Conversation,
    member: Member | None,
    *,
    now: datetime,
    wechat_enabled: bool,
    sms_provider: str,
) -> list[ChannelChoice]:
    """The channels to try, in order (module rules); `NoChannel` when there is none."""
    out: list[ChannelChoice] = []
    if wechat_enabled:
        info = await _wechat(session, conversation, member)
        if cs_window_open(info, now):
            out.append(ChannelChoice("wechat", CUSTOMER_SERVICE, info.openid))
    phone = await _phone(session, conversation, member)
    if phone:
        via = "console" if sms_provider == "console" else "twilio"
        out.append(ChannelChoice("sms", via, phone))
    if not out:
        raise NoChannel()
    return out


async def deliver(
    choices: list[ChannelChoice], text: str, *, wechat: WeChatSender | None, sms: SmsSender
) -> Delivery:
    """Send `text` by the first of `choices` that takes it (module rules)."""
    last: Delivery | None = None
    for choice in choices:
        try:
            if choice.channel == "wechat":
                if wechat is None:
                    continue
                await wechat.send_text(choice.address, text)
            else:
                await sms.send(choice.address, text)
            return Delivery(choice.channel, choice.via, SENT)
        except WeChatApiError as exc:
            last = Delivery(choice.channel, choice.via, FAILED, str(exc))
            if exc.errcode not in OUT_OF_WINDOW | NOT_FOLLOWING:
                return last
        except SmsSendError as exc:
            return Delivery(choice.channel, choice.via, FAILED, f"{exc.kind}: {exc}")
    if last is None:
        raise NoChannel()
    return last


async def answer(
    sessions: async_sessionmaker[AsyncSession],
    *,
    scope: Scope,
    conversation_id: int,
    text: str,
    now: datetime,
    settings: Settings,
    wechat: WeChatSender | None,
    sms: SmsSender,
) -> Delivery:
    """An assistant's answer: checked and routed in one transaction, sent outside any
    (a provider call never holds the database), kept in the thread in a third.
    `models.inbox.thread_for` decides 404 / 403; a closed conversation is 409."""
    text = inbox.clean_reply(text)
    async with transaction(sessions) as session:
        thread = await inbox.thread_for(session, scope=scope, conversation_id=conversation_id)
        inbox.check_open(thread.conversation)
        choices = await routes(
            session, thread.conversation, thread.member, now=now,
            wechat_enabled=settings.wechat.enabled and wechat is not None,
            sms_provider=settings.sms.provider,
        )  # fmt: skip
    delivery = await deliver(choices, text, wechat=wechat, sms=sms)
    if delivery.status == FAILED:
        log.warning("inbox answer %d by %s failed: %s", conversation_id, delivery.channel,
                    delivery.error)  # fmt: skip
    async with transaction(sessions) as session:
        conversation = await session.get(Conversation, conversation_id)
        inbox.add_message(
            session, conversation, author=ASSISTANT, assistant_id=scope.assistant_id, text=text,
            at=now, channel=delivery.channel, via=delivery.via, status=delivery.status,
            error=delivery.error,
        )  # fmt: skip
        if delivery.status == SENT and conversation.status != CLOSED:
            await inbox.mark(session, conversation, status=ANSWERED, now=now)
    return delivery


async def close(
    sessions: async_sessionmaker[AsyncSession], *, scope: Scope, conversation_id: int,
    now: datetime,
) -> None:  # fmt: skip
    """Close the conversation (closing a closed one changes nothing)."""
    async with transaction(sessions) as session:
        thread = await inbox.thread_for(session, scope=scope, conversation_id=conversation_id)
        if thread.conversation.status != CLOSED:
            await inbox.mark(
                session, thread.conversation, status=CLOSED, now=now, by=scope.assistant_id
            )
