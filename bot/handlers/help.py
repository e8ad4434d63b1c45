"""Help (帮助 / HELP / INFO / ?) and the answer to anything else (CONTRACT.md):
a short list of what the member can send — never an error, never silence.

Who is asking decides the text. Help (帮助) always lists what the bot can do; for
an unbound WeChat user it starts with how to bind, for an SMS number that is no
member with how to join. A member-only keyword (or anything unknown) from a
non-member gets just how to bind (WeChat) or join (SMS) — `not_member` — except:

- anything unknown from a sender whose hand-off conversation is open joins it
  (`bot.handlers.handoff.join_open`): the person who answers reads it;
- an openid waiting for its binding code is asked for the code (`bind_waiting`),
  not given the whole instruction again;
- a resume word (接受) from an unbound openid with no stop on record is explained
  (`resume_unbound`): we send an unbound openid no proactive messages, so there is
  nothing to resume. A stop it sent is kept by address and a later resume undoes it
  (`bot.handlers.consent`); once bound, that choice becomes the member's.
"""

from __future__ import annotations

from bot.conversation import Reply
from bot.handlers import bind, handoff
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match


async def _store_ctx(turn: Turn) -> dict:
    store = await turn.store()
    return {"store": store.name if store else None, "store_phone": store.phone if store else None}


async def not_member(turn: Turn, match: Match | None = None) -> Reply:
    """What a sender who is no member gets instead of member data."""
    if not turn.is_wechat:
        return turn.reply("not_member")
    if match is not None and match.intent is Intent.RESUME:
        return turn.reply("resume_unbound")
    waiting = await bind.waiting_code(turn)
    if waiting is not None:
        return turn.reply("bind_waiting", phone=waiting.phone)
    return turn.reply("unbound")


async def help_(turn: Turn, match: Match) -> Reply:
    return turn.reply(
        "help", wechat=turn.is_wechat, member=turn.member is not None, **await _store_ctx(turn)
    )


async def fallback(turn: Turn, match: Match) -> Reply:
    joined = await handoff.join_open(turn)  # a text for the person already asked
    if joined is not None:
        return joined
    if turn.member is None:
        return await not_member(turn, match)
    return turn.reply("fallback", name=turn.member.name, wechat=turn.is_wechat)


ROUTES = [
    Route(Intent.HELP, help_, needs_member=False),
    Route(Intent.UNKNOWN, fallback, needs_member=False),
]
