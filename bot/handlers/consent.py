"""Stop and resume proactive messages (CONTRACT.md stop/resume words, MESSAGING.md,
DOMAIN.md §7 rule 6: "if this message disturbs you, reply 不接受").

- A stop applies at once to every proactive message on every channel of the
  member: it is the member's flag plus an entry in the consent history
  (`models.consent.stop`, recorded with the time, the channel and the words).
- A stop or resume said in a sentence (以后别给我发短信了, "please stop texting me")
  is the same, recorded with the source "sentence: <the sentence>".
- It is confirmed once. A second stop records nothing and gets a one-line
  "you are already unsubscribed" — an answer to the member's own message.
- A stopped member still gets answers to whatever they ask.
- Resume words undo it, symmetrically (confirmed once, then "you already receive").
- A stop from a sender who is no member (an unknown phone, an unbound openid) is
  kept by address (`models.consent.stop_address`, with time, channel and words)
  and applies when the address joins: a member created with that phone, an openid
  bound to a member. Resume words from such a sender undo it the same way.
The pending confirmation (redeem, mail) is cancelled by `bot.bot` before a stop.
"""

from __future__ import annotations

from bot.conversation import Reply
from bot.handlers.help import not_member
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match
from models import consent


def _source(match: Match) -> str:
    """How the consent history names what the member sent: the keyword, or the
    sentence understood as one (`bot.understand`)."""
    return f"{'sentence' if match.sentence else 'keyword'}: {match.text}"


async def stop(turn: Turn, match: Match) -> Reply:
    if turn.member is None:
        changed = await consent.stop_address(
            turn.session, channel=turn.channel, address=turn.inbound.sender, at=turn.now,
            source=_source(match),
        )  # fmt: skip
        if not changed:
            return turn.reply("stop_already")
        return turn.reply("stop_done", "stopped", member=False)
    changed = await consent.stop(
        turn.session, member=turn.member, channel=turn.channel, at=turn.now, source=_source(match)
    )
    if not changed:
        return turn.reply("stop_already")
    return turn.reply("stop_done", "stopped", member=True)


async def resume(turn: Turn, match: Match) -> Reply:
    if turn.member is None:
        changed = await consent.resume_address(
            turn.session, channel=turn.channel, address=turn.inbound.sender, at=turn.now,
            source=_source(match),
        )  # fmt: skip
        if not changed:  # nothing stopped here: what anyone who is no member gets
            return await not_member(turn, match)
        return turn.reply("resume_done", "resumed")
    changed = await consent.resume(
        turn.session, member=turn.member, channel=turn.channel, at=turn.now, source=_source(match)
    )
    if not changed:
        return turn.reply("resume_already")
    return turn.reply("resume_done", "resumed")


ROUTES = [
    Route(Intent.STOP, stop, needs_member=False),
    Route(Intent.RESUME, resume, needs_member=False),
]
