"""Questions back to the member: numbered options, and "do you want to stop?".

- `clarify` (`Intent.CLARIFY`, from `bot.understand`): a sentence with two close
  meanings ("积分和券", "查一下") gets the options numbered from 1; they are kept as
  the sender's pending action (kind ``choice``, 10 minutes, `bot.handlers.pending`)
  and the member's next message, a number ("1", "第二个"), picks one: `picked`
  gives the `Match` to run, as if the member had sent that keyword. Anything else
  drops the question silently and is handled normally.
- `maybe_stop` (`Intent.MAYBE_STOP`): a sentence that might be a stop but is not
  clear (短信太多了, 怎么退订, "why do you keep texting me") is never ignored: the
  member is asked once, naming the stop word. A member may also confirm with
  确认 / CONFIRM / YES (pending kind ``stop_ask``, `confirm_stop`); the stop is then
  recorded with the sentence as its source. A member already stopped is told so.
"""

from __future__ import annotations

import re

from bot.conversation import Reply
from bot.handlers import consent, pending
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match
from bot.understand.cues import YES
from models.pending import CHOICE, STOP_ASK, payload
from models.tables.conversation import PendingAction

QUIET_KINDS = frozenset({CHOICE, STOP_ASK})
"""Pending kinds dropped without a "cancelled" note when the member writes something else."""
_PICK = re.compile(
    r"^(?:第\s*)?([0-9]|[一二两三四五])\s*(?:个|项|号|种)?$|^(?:option|number|no)\s*([0-9])$"
)
_CN = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}


def _options(args: str) -> list[list[str]]:
    pairs = (part.partition("=") for part in args.split(";") if part)
    return [[intent, value] for intent, _, value in pairs]


async def clarify(turn: Turn, match: Match) -> Reply:
    options = _options(match.args)
    await pending.put(
        turn, kind=CHOICE, data={"options": options, "lang": match.lang, "text": match.text}
    )
    return turn.reply(
        "clarify", "choice_pending", options=[o[0] for o in options], name=turn.member.name
    )


def says_yes(match: Match) -> bool:
    """ "好的", "可以", "👍", "sure": a yes to the question the bot just asked (`bot.bot`
    then confirms the pending redemption, mailing or stop, as 确认 would)."""
    return match.intent is Intent.SMALLTALK and match.args == YES


def picked(row: PendingAction, match: Match) -> Match | None:
    """The option a reply to the numbered question picks, or None (not a pick)."""
    m = _PICK.match(match.text)
    if m is None:
        return None
    digit = m.group(1) or m.group(2)
    number = _CN.get(digit) or int(digit)
    data = payload(row)
    options = data.get("options", [])
    if not 1 <= number <= len(options):
        return None
    intent, args = options[number - 1]
    return Match(Intent(intent), args, data.get("text", ""), lang=data.get("lang"), sentence=True)


async def maybe_stop(turn: Turn, match: Match) -> Reply:
    if turn.member is None:
        return turn.reply("stop_ask", name=None, confirm=False)
    if turn.member.stopped:  # nothing is sent to them already: say so, ask nothing
        return turn.reply("stop_already")
    await pending.put(turn, kind=STOP_ASK, data={"text": match.text})
    return turn.reply("stop_ask", "stop_asked", name=turn.member.name, confirm=True)


async def confirm_stop(turn: Turn, row: PendingAction) -> Reply:
    text = payload(row).get("text", "")
    reply = await consent.stop(turn, Match(Intent.STOP, "", f"{text} (confirmed)", sentence=True))
    await pending.complete(turn, row)
    return reply


ROUTES = [
    Route(Intent.CLARIFY, clarify),
    Route(Intent.MAYBE_STOP, maybe_stop, needs_member=False),
]
CONFIRMS = {STOP_ASK: confirm_stop}
