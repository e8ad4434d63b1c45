"""Hand-off: what only a person can answer goes to the member's own assistant (CONTRACT.md
"Sentences, small talk and hand-off"; the inbox, `models.inbox`).

`handoff` (the `HANDOFF` intent: stock, sizes, alterations, returns, complaints, "王芳在吗",
or the words 人工 / 转人工 / AGENT) opens a conversation — or joins the sender's open
one — with the member's owning assistant, else the store's managers; a sender who is
no member (an unbound openid, an unknown number) goes to the managers. The member is
told who will answer and when: within the store's hours (`[stores] hours`,
`hours_by_store`) — before closing today, or from the next opening.

`join_open` is asked first by the fallback (`bot.handlers.help.fallback`): a text the
bot does not understand from a sender whose conversation is still open joins it,
instead of getting the help text. Keywords keep their own answers meanwhile.

Every message the member sends here and every answer the bot gives are kept in the
thread (`models.inbox.add_message`).
"""

from __future__ import annotations

from sqlmodel import col, select

from bot.conversation import Reply
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match
from models import inbox
from models.inbox import BOT, MEMBER
from models.tables.inbox import Conversation
from models.tables.members import Assistant, Store
from scheduler.policy import is_allowed, next_allowed

PASSIVE = "passive"
"""`via` of the bot's own answer in the thread: the webhook's reply to the message."""


async def _who(turn: Turn, conversation: Conversation) -> str | None:
    """The name of who will answer: the assistant, else the store's (first) manager."""
    if conversation.assistant_id is not None:
        assistant = await turn.session.get(Assistant, conversation.assistant_id)
        return assistant.name if assistant else None
    if conversation.store_id is None:
        return None
    stmt = (
        select(Assistant.name)
        .where(
            Assistant.store_id == conversation.store_id,
            Assistant.role == "manager",
            col(Assistant.active),
        )
        .order_by(col(Assistant.id))
        .limit(1)
    )
    return (await turn.session.exec(stmt)).first()


async def when(turn: Turn, store_id: int | None) -> dict:
    """When the answer comes, for the templates: `open_now` with `until` (today's
    closing), else the next opening `opens` on `day` ("today" | "tomorrow")."""
    store = await turn.session.get(Store, store_id) if store_id is not None else None
    hours = turn.settings.stores.hours_of(store.code if store else None)
    tz = turn.tz
    if is_allowed(turn.now, tz=tz, send_window=hours, preferred_contact=None):
        return {"open_now": True, "until": hours.rsplit("-", 1)[1], "opens": "", "day": "today"}
    opening = next_allowed(turn.now, tz=tz, send_window=hours, preferred_contact=None)
    local = opening.astimezone(tz)
    day = "today" if local.date() == turn.now.astimezone(tz).date() else "tomorrow"
    return {"open_now": False, "until": "", "opens": local.strftime("%H:%M"), "day": day}


async def _hand_over(turn: Turn, conversation: Conversation, opened: bool) -> Reply:
    inbox.add_message(
        turn.session, conversation, author=MEMBER, text=turn.inbound.text, at=turn.now,
        channel=turn.channel,
    )  # fmt: skip
    name = turn.member.name if turn.member else None
    reply = turn.reply(
        "handoff_opened" if opened else "handoff_joined",
        "handed_off" if opened else "joined_conversation",
        name=name,
        who=await _who(turn, conversation),
        **await when(turn, conversation.store_id),
    )
    inbox.add_message(
        turn.session, conversation, author=BOT, text=reply.text or "",
        at=turn.now, channel=turn.channel, via=PASSIVE,
    )  # fmt: skip
    await turn.session.flush()
    return reply


async def handoff(turn: Turn, match: Match) -> Reply:
    conversation, opened = await inbox.open_or_join(
        turn.session, member=turn.member, channel=turn.channel, address=turn.inbound.sender,
        now=turn.now,
    )  # fmt: skip
    return await _hand_over(turn, conversation, opened)


async def join_open(turn: Turn) -> Reply | None:
    """Join the sender's open conversation, if there is one (else None)."""
    key = inbox.thread_key(
        turn.member.id if turn.member else None, turn.channel, turn.inbound.sender
    )
    if await inbox.live(turn.session, key) is None:
        return None
    conversation, _opened = await inbox.open_or_join(
        turn.session, member=turn.member, channel=turn.channel, address=turn.inbound.sender,
        now=turn.now,
    )  # fmt: skip
    return await _hand_over(turn, conversation, False)


ROUTES = [Route(Intent.HANDOFF, handoff, needs_member=False)]
