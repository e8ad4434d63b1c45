"""The member bot: one inbound message in, one reply out (`bot.conversation.Conversation`).

The channel adapters (WeChat, Twilio SMS) and `memberbot chat` call
`MemberBot.handle`. A bound WeChat member's "积分" with nothing pending is answered
by the quick path (`bot.quick`: one raw read, no session, the same text; its only
write, the `last_inbound_at` stamp, goes behind the reply); everything else, and
anything the quick path cannot answer alone, is one transaction for everything it
changes:

1. find who is writing — WeChat: the openid's `Identity` (created on first
   contact), the member it is actively bound to and the sender's pending
   confirmation, in one query; SMS/console: the member with that phone. The
   identity's `last_inbound_at` opens the 48-hour customer-service window
   (MESSAGING.md) and is stamped only for a message the member sent — an event (menu
   click, follow, scan) opens no window for proactive messages; it is rewritten
   only when it is older than `touch_every` (60 s), so a conversation's messages
   within a minute cost no write. A stamp up to a
   minute old closes the window up to a minute early and counts customer-service
   messages from a little earlier against its 5-message cap: both on the safe side;
2. choose the reply language — the member's locale, else the language the message
   is written in (`bot.router.Match.lang`), else the brand's;
3. route the text (`bot.router`) or the event (`bot.handlers.events`); a text no
   keyword matches — or a keyword whose argument is a sentence — is understood as a
   sentence (`bot.understand`: the same intents and arguments, plus small talk,
   hand-off, numbered options and the stop question);
4. settle the sender's pending confirmation (`bot.handlers.pending`):
   - 确认/CONFIRM/YES carries it out when still inside its 10 minutes, else
     answers that it lapsed and nothing was done;
   - a number answering numbered options (kind ``choice``) picks one
     (`bot.handlers.choice`);
   - anything else — a stop word too (stop words always mean stop) — cancels it,
     is handled normally, and the answer starts with a one-line "cancelled" note
     (unless that message itself made a new request, or the pending action was
     only a question: numbered options, the stop question);
5. dispatch to the handler of the intent (`ROUTES` of each handler module); a
   member-only intent from a non-member gets how to bind (WeChat) or join (SMS).

Locks (PostgreSQL; on SQLite every transaction begins IMMEDIATE and so runs alone):
a message that only reads (`READ_ONLY`: points, vouchers, help, anything unknown)
takes no lock and, with a fresh `last_inbound_at`, writes nothing; any other
message or event first locks the sender — a WeChat sender's identity row, an SMS
sender's address (a transaction-scoped advisory lock, `bot.sender_lock.lock_address`) — so one
sender's changing messages are handled one at a time, on every replica; a pending
confirmation that exists is re-read under its row lock (`bot.handlers.pending.current`).

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
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.conversation import Inbound, Reply
from bot.handlers import (
    bind,
    card,
    choice,
    consent,
    events,
    handoff,
    pending,
    points,
    rewards,
    smalltalk,
    vouchers,
)
from bot.handlers import help as help_
from bot.handlers.choice import QUIET_KINDS
from bot.handlers.turn import Route, Turn
from bot.quick import QuickPoints
from bot.router import Intent, Match, Router
from bot.sender_lock import lock_sender, wechat_sender
from bot.understand.reader import Reader
from models import binding, identities, rawdb
from models.clock import local_date
from models.db import transaction
from models.errors import InvalidInput
from models.locale_format import pick_locale
from models.members import get_member_by_phone
from models.pending import CHOICE, in_window, is_live
from models.phone import mask_phone
from models.settings import Settings
from models.tables.conversation import PendingAction
from models.tables.members import Identity, Member
from scheduler.send.providers import SmsSender, SmsSendError
from scheduler.text import render

log = logging.getLogger("memberbot.bot")

ROUTES: dict[Intent, Route] = {
    r.intent: r
    for module in (
        points,
        rewards,
        vouchers,
        card,
        consent,
        bind,
        handoff,
        help_,
        smalltalk,
        choice,
    )
    for r in module.ROUTES
}
CONFIRMS = {**rewards.CONFIRMS, **card.CONFIRMS, **choice.CONFIRMS}
READ_ONLY = frozenset(
    {Intent.POINTS, Intent.VOUCHERS, Intent.HELP, Intent.UNKNOWN, Intent.SMALLTALK}
)
"""Intents whose handlers need no lock on the sender: they change nothing, except that an
unknown text joins the sender's open hand-off conversation (`bot.handlers.handoff`), an
append that needs no lock."""
ANSWERED_IN_A_CHAT = frozenset(
    {Intent.POINTS, Intent.VOUCHERS, Intent.HELP, Intent.STOP, Intent.RESUME,
     Intent.MAYBE_STOP, Intent.BIND, Intent.CODE, Intent.CONFIRM}
)  # fmt: skip
"""While the member has a live conversation with their assistant (`bot.handlers.handoff`),
a sentence of another meaning ("好的，周六去拿", "谢谢") is part of that conversation and
joins it; these the bot still answers itself. A keyword is always the bot's."""
TOUCH_EVERY = timedelta(seconds=60)
"""How old `Identity.last_inbound_at` may get before a message rewrites it."""


class MemberBot:
    """The conversation. Dependencies are injected; nothing global.

    `touch_every`: how old the sender's `last_inbound_at` may be before a message
    rewrites it (`TOUCH_EVERY`; zero rewrites it on every message).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        sms_sender: SmsSender,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        touch_every: timedelta = TOUCH_EVERY,
        quick: bool = True,
    ):
        self._settings = settings
        self._rules = settings.loyalty
        self._sessions = sessions
        self._sms = sms_sender
        self._clock = clock
        self._reader = Reader(Router(settings.keywords.model_dump()), self._rules.rewards.catalogue)
        self._touch_every = touch_every
        engine = sessions.kw.get("bind")
        raw = rawdb.for_engine(engine) if quick and engine is not None else None
        self._raw = raw
        self._quick = (
            QuickPoints(settings, raw, touch_every=touch_every) if raw is not None else None
        )

    async def handle(self, inbound: Inbound) -> Reply:
        now = self._clock()
        match = None if inbound.event else self._match(inbound.text)
        quick = self._quick is not None and match is not None and inbound.channel == "wechat"
        if quick and self._quick_answers(match):
            reply = await self._quick.answer(inbound.sender, now)
            if reply is not None:
                return reply
        async with transaction(self._sessions) as session:
            turn = await self._open_turn(session, inbound, now, match.lang if match else None)
            if match is None:
                if inbound.event.casefold() != "click":  # follow / unfollow change the identity
                    await lock_sender(turn)
                reply = await events.on_event(turn, self._dispatch)
            else:
                reply = await self._dispatch(turn, match)
        return await self._send_outgoing(turn, reply)

    async def quick(self, inbound: Inbound, key: str) -> Reply | None:
        """The answer to a message that changes nothing, when the quick path can give it
        from one read that also shows the inbound log does not have `key` yet; None
        otherwise (then `handle` it, through the inbound log's claim). Today that is a
        bound WeChat member's "积分" (`bot.quick`); its only write, the stamp, is
        idempotent and moves forward only, so a duplicate answered the same way at the
        same time changes nothing twice."""
        if self._quick is None or inbound.event or inbound.channel != "wechat":
            return None
        if not self._quick_answers(self._match(inbound.text)):
            return None
        return await self._quick.answer(inbound.sender, self._clock(), unseen=key)

    def _quick_answers(self, match: Match) -> bool:
        """The quick path answers "积分" in the member's or the brand's language: a
        balance asked in another language ("POINTS" on a Chinese brand) takes the
        normal path, which also weighs the language of the message."""
        return match.intent is Intent.POINTS and (
            match.lang is None or match.lang == pick_locale(self._settings.brand.locale)
        )

    def _match(self, text: str) -> Match:
        return self._reader.read(text)

    async def settle(self) -> None:
        """Wait until the writes made behind quick answers (stamps) are committed."""
        if self._raw is not None:
            await self._raw.settle()

    # ------------------------------------------------------------------ who is writing

    async def _open_turn(
        self, session: AsyncSession, inbound: Inbound, now: datetime, wrote_in: str | None = None
    ) -> Turn:
        identity: Identity | None = None
        member: Member | None = None
        row: PendingAction | None = None
        stale = now - self._touch_every
        if inbound.channel == "wechat":
            # Only a message the member sent opens the 48-hour window: a click, a follow
            # or a scan opens a one-minute allowance for replies, never for what we send
            # on our own (MESSAGING.md "WeChat", docs/wechat.md), so events do not stamp.
            wrote = inbound.event is None
            identity, member, row = await wechat_sender(session, inbound.sender, now, wrote)
            stamp = identity.last_inbound_at
            if wrote and (stamp is None or stamp <= stale):
                await identities.stamp(
                    session, channel="wechat", address=identity.address, now=now, stale=stale
                )
                set_committed_value(identity, "last_inbound_at", now)
        else:
            try:
                member = await get_member_by_phone(session, phone=inbound.sender)
            except InvalidInput:
                member = None  # a sender id that is no phone number: nobody we know
            if member is not None:
                await identities.stamp(
                    session, channel="sms", address=member.phone, now=now, stale=stale
                )
        brand = self._settings.brand
        return Turn(
            session=session,
            settings=self._settings,
            rules=self._rules,
            inbound=inbound,
            now=now,
            today=local_date(now, brand.tz),
            locale=pick_locale(member.locale if member else None, wrote_in, brand.locale),
            wrote_in=wrote_in,
            member=member,
            identity=identity,
            pending=row,
            pending_read=identity is not None,
        )

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, turn: Turn, match: Match) -> Reply:
        if match.intent not in READ_ONLY:
            await lock_sender(turn)
        row = await pending.current(turn)
        live = row is not None and is_live(row, turn.now)
        yes = choice.says_yes(match) and live and row.kind in CONFIRMS
        if match.intent is Intent.CONFIRM or yes:
            return await self._confirm(turn, row)
        if live and row.kind == CHOICE:
            chosen = choice.picked(row, match)
            if chosen is not None:
                await lock_sender(turn)
                await pending.clear(turn, row)
                if chosen.lang:
                    turn.set_language(chosen.lang)
                return await self._run(turn, chosen)
        cancelled = live and row.kind not in QUIET_KINDS
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
        if match.sentence and match.intent not in ANSWERED_IN_A_CHAT:
            joined = await handoff.join_open(turn)  # the person the member is talking to
            if joined is not None:
                return joined
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
        if not in_window(row, turn.now):
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
                    await binding.mark_failed(session, bind_code_id=sms.bind_code_id)
                text = render("bind_send_failed", turn.locale, brand=self._settings.brand.name)
                return Reply(text, ("bind_code_failed",))
        return reply
