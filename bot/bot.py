"""The member bot: one inbound message in, one reply out (`bot.conversation.Conversation`).

The channel adapters (WeChat, Twilio SMS) and `memberbot chat` call
`MemberBot.handle`. Each call is one transaction for everything it changes:

1. find who is writing — WeChat: the openid's `Identity` (created on first
   contact, `last_inbound_at` kept for the 48-hour customer-service window) and
   the member it is actively bound to; SMS/console: the member with that phone;
2. choose the reply language — the member's locale, else the brand's;
3. route the text (`bot.router`) or the event (`bot.handlers.events`);
4. settle the sender's pending confirmation (`bot.handlers.pending`):
   - a stop word cancels it silently and stops (stop words always mean stop);
   - 确认/CONFIRM/YES carries it out when still inside its 10 minutes, else
     answers that it lapsed and nothing was done;
   - anything else cancels it, is handled normally, and the answer starts with a
     one-line "cancelled" note (unless that message itself made a new request);
5. dispatch to the handler of the intent (`ROUTES` of each handler module); a
   member-only intent from a non-member gets how to bind (WeChat) or join (SMS).

After the commit, SMS the handlers queued (binding codes) are sent through the
injected `SmsSender` (never while the transaction holds locks: the console sender
or an outbox may need the database); a refused send (`SmsSendError`) marks the
code failed in a second, small transaction and changes the reply.

Time: every decision (the confirmation window, code expiry, "today" for the
birthday and pickup days) uses the injected clock at handling time, not
`Inbound.at` (a platform's timestamp of the original message, equal on retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Settings
from bot.conversation import Inbound, Reply
from bot.handlers import bind, card, consent, events, pending, points, rewards, vouchers
from bot.handlers import help as help_
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match, route
from bot.sms_sender import SmsSender, SmsSendError
from bot.templating import pick_locale, render
from models.clock import local_date
from models.db import insert_ignore, transaction
from models.errors import InvalidInput
from models.members import get_member_by_phone
from models.phone import mask_phone
from models.tables import Identity, Member, PendingAction

log = logging.getLogger("memberbot.bot")

ROUTES: dict[Intent, Route] = {
    r.intent: r
    for module in (points, rewards, vouchers, card, consent, bind, help_)
    for r in module.ROUTES
}
CONFIRMS = {**rewards.CONFIRMS, **card.CONFIRMS}


class MemberBot:
    """The conversation. Dependencies are injected; nothing global."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        sms_sender: SmsSender,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._settings = settings
        self._sessions = sessions
        self._sms = sms_sender
        self._clock = clock

    async def handle(self, inbound: Inbound) -> Reply:
        now = self._clock()
        async with transaction(self._sessions) as session:
            turn = await self._open_turn(session, inbound, now)
            if inbound.event:
                reply = await events.on_event(turn, self._dispatch)
            else:
                reply = await self._dispatch(turn, route(inbound.text))
        return await self._send_outgoing(turn, reply)

    # ------------------------------------------------------------------ who is writing

    async def _open_turn(self, session: AsyncSession, inbound: Inbound, now: datetime) -> Turn:
        identity: Identity | None = None
        member: Member | None = None
        if inbound.channel == "wechat":
            identity = await _wechat_identity(session, inbound.sender, now)
            if identity.active and identity.member_id is not None:
                member = await session.get(Member, identity.member_id)
        else:
            try:
                member = await get_member_by_phone(session, phone=inbound.sender)
            except InvalidInput:
                member = None  # a sender id that is no phone number: nobody we know
            if member is not None:
                await _touch_sms_identity(session, member.phone, now)
        brand = self._settings.brand
        return Turn(
            session=session,
            settings=self._settings,
            inbound=inbound,
            now=now,
            today=local_date(now, brand.tz),
            locale=pick_locale(member.locale if member else None, brand.locale),
            member=member,
            identity=identity,
        )

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, turn: Turn, match: Match) -> Reply:
        row = await pending.current(turn)
        if match.intent is Intent.STOP:
            if row is not None:
                await pending.clear(turn, row)
            return await self._run(turn, match)
        if match.intent is Intent.CONFIRM:
            return await self._confirm(turn, row)
        cancelled = row is not None and pending.is_live(row, turn.now)
        if row is not None:
            await pending.clear(turn, row)
        if match.intent is Intent.CODE:
            reply = await bind.attempt(turn, match)
            if reply is None:
                reply = await self._run(turn, Match(Intent.UNKNOWN, "", match.text))
        else:
            reply = await self._run(turn, match)
        if cancelled and not turn.pending_created:
            note = turn.text("cancelled", kind=row.kind)
            reply = Reply(f"{note}\n{reply.text}" if reply.text else note, reply.effects)
        return reply

    async def _run(self, turn: Turn, match: Match) -> Reply:
        entry = ROUTES[match.intent] if match.intent in ROUTES else ROUTES[Intent.UNKNOWN]
        if entry.needs_member and turn.member is None:
            return await help_.not_member(turn, match)
        return await entry.handler(turn, match)

    async def _confirm(self, turn: Turn, row: PendingAction | None) -> Reply:
        usable = (
            row is not None
            and turn.member is not None
            and row.member_id == turn.member.id
            and row.kind in CONFIRMS
        )
        if not usable:
            if row is not None:
                await pending.clear(turn, row)
            if turn.member is None:
                return await help_.not_member(turn)
            return turn.reply("confirm_nothing")
        if not pending.in_window(row, turn.now):
            await pending.clear(turn, row)
            if row.completed_at is not None:
                return turn.reply("confirm_nothing")
            return turn.reply("confirm_expired", kind=row.kind)
        return await CONFIRMS[row.kind](turn, row)

    # ------------------------------------------------------------------ after the commit

    async def _send_outgoing(self, turn: Turn, reply: Reply) -> Reply:
        for sms in turn.outgoing:
            try:
                await self._sms.send(sms.to, sms.body)
            except SmsSendError as exc:
                log.warning("bind code SMS to %s failed: %s", mask_phone(sms.to), exc)
                async with transaction(self._sessions) as session:
                    await bind.mark_failed(session, bind_code_id=sms.bind_code_id)
                text = render("bind_send_failed", turn.locale, brand=self._settings.brand.name)
                return Reply(text, ("bind_code_failed",))
        return reply


async def _wechat_identity(session: AsyncSession, openid: str, now: datetime) -> Identity:
    """The openid's identity row (created unbound on first contact), marked as just heard from."""
    table = Identity.__table__
    stmt = (
        insert_ignore(session.bind.dialect.name, table)
        .values(channel="wechat", address=openid, member_id=None, active=True, bad=False,
                created_at=now)
        .on_conflict_do_nothing(index_elements=["channel", "address"])
    )
    await session.exec(stmt)
    identity = (
        await session.exec(
            select(Identity)
            .where(Identity.channel == "wechat", Identity.address == openid)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()
    identity.last_inbound_at = now
    session.add(identity)
    return identity


async def _touch_sms_identity(session: AsyncSession, phone: str, now: datetime) -> None:
    identity = (
        await session.exec(
            select(Identity).where(Identity.channel == "sms", Identity.address == phone)
        )
    ).first()
    if identity is not None:
        identity.last_inbound_at = now
        session.add(identity)
