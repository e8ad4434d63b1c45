"""Small talk (你好, 谢谢, 好的, 早上好, 👍, hi, thanks): a short friendly answer by name.

`bot.understand` names the kind in `Match.args`: "greet", "thanks", "bye", or "ok",
"yes", "no" (one answer: "好的，张三！"; a "yes" while the bot waits for a confirmation
confirms instead — `bot.bot`).
Not the fallback and not a hand-off: nobody needs to answer a thank-you but the bot.
A greeting from someone who is no member gets how to bind (WeChat) or join (SMS).
"""

from __future__ import annotations

from bot.conversation import Reply
from bot.handlers.help import not_member
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match

KINDS = frozenset({"greet", "thanks", "ok", "bye", "yes", "no"})


async def reply(turn: Turn, match: Match) -> Reply:
    kind = match.args if match.args in KINDS else "ok"
    if turn.member is None and kind == "greet":  # hello from a stranger: how to bind / join
        return await not_member(turn, match)
    name = turn.member.name if turn.member is not None else None
    return turn.reply("smalltalk", kind=kind, name=name)


ROUTES = [Route(Intent.SMALLTALK, reply, needs_member=False)]
