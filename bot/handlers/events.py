"""WeChat events: follow, unfollow, menu clicks (MESSAGING.md "WeChat Official Account").

- ``subscribe``: the openid's identity is (re)activated — unless the member has
  meanwhile bound another WeChat account — and the follower is welcomed: a bound
  member by name ("welcome back"), anyone else with how to bind.
- ``unsubscribe``: the identity is marked inactive (no proactive WeChat message
  can reach an unfollower); WeChat shows no answer to it, so the reply is None.
  The binding itself is kept, so following again restores it.
- ``click``: the menu key (`bot.router.MENU_KEYS`) is handled exactly like the
  keyword it stands for.
- Other events (VIEW links, location reports, …) need no answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.conversation import Reply
from bot.handlers.turn import Turn
from bot.router import Match, route_menu
from models import identities
from models.locale_format import pick_locale
from models.tables.members import Member

Dispatch = Callable[[Turn, Match], Awaitable[Reply]]


async def subscribe(turn: Turn) -> Reply:
    identity = turn.identity
    if not identity.active:
        refollowed = await identities.follow(turn.session, identity=identity)
        if refollowed and identity.member_id is not None:
            turn.member = await turn.session.get(Member, identity.member_id)
            turn.locale = pick_locale(turn.member.locale, turn.locale)
    if turn.member is not None:
        return turn.reply("welcome_back", "subscribed", name=turn.member.name)
    return turn.reply("welcome", "subscribed")


async def unsubscribe(turn: Turn) -> Reply:
    await identities.unfollow(turn.session, identity=turn.identity)
    return Reply(None, ("unsubscribed",))


async def on_event(turn: Turn, dispatch: Dispatch) -> Reply:
    event = (turn.inbound.event or "").casefold()
    if event == "subscribe":
        return await subscribe(turn)
    if event == "unsubscribe":
        return await unsubscribe(turn)
    if event == "click":
        return await dispatch(turn, route_menu(turn.inbound.event_key))
    return Reply(None)
