"""Help (帮助 / HELP / INFO / ?) and the answer to anything else (CONTRACT.md):
a short list of what the member can send — never an error, never silence.

Who is asking decides the text: a member gets the keywords; an unbound WeChat
user gets how to bind first; an SMS number that is no member gets how to join.
The same texts answer a member-only keyword from a non-member (`not_member`).
"""

from __future__ import annotations

from bot.conversation import Reply
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match


async def _store_ctx(turn: Turn) -> dict:
    store = await turn.store()
    return {"store": store.name if store else None, "store_phone": store.phone if store else None}


async def not_member(turn: Turn, match: Match | None = None) -> Reply:
    """What a sender who is no member gets instead of member data."""
    if turn.is_wechat:
        return turn.reply("unbound")
    return turn.reply("not_member")


async def help_(turn: Turn, match: Match) -> Reply:
    if turn.member is None:
        return await not_member(turn, match)
    return turn.reply("help", wechat=turn.is_wechat, **await _store_ctx(turn))


async def fallback(turn: Turn, match: Match) -> Reply:
    if turn.member is None:
        return await not_member(turn, match)
    return turn.reply("fallback", name=turn.member.name, wechat=turn.is_wechat)


ROUTES = [
    Route(Intent.HELP, help_, needs_member=False),
    Route(Intent.UNKNOWN, fallback, needs_member=False),
]
