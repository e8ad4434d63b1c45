"""Answer an inbound message once, by its platform's deadline, and deliver it late if it
is not ready by then: the part both webhooks share (`bot.inbound_log` does the work).

A channel gives the message, its de-duplication key and its deadline, and two things
of its own: `render(text)`, the passive reply on its wire (WeChat XML or `success`,
TwiML), and `deliver(text)`, how an answer that missed the deadline still reaches
the sender (WeChat's customer-service API, an SMS send).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.appkeys import CONVERSATION, INBOUND_LOG
from bot.conversation import Inbound
from bot.inbound_outcome import HandlingFailed, Outcome, deliver_late

log = logging.getLogger("memberbot.channels")

Deliver = Callable[[str], Awaitable[None]]


async def answer(
    app: web.Application,
    inbound: Inbound,
    key: str,
    *,
    deadline: float,
    deliver: Deliver,
    answered: bool = False,
) -> Outcome:
    """Handle `inbound` once per (channel, `key`) and say what to answer by `deadline`
    (a `loop.time()`); an answer not ready by then is handed to `deliver` when it is.
    `answered`: the platform already got its answer, so whatever is found goes late.
    Raises HandlingFailed if the handler raised."""
    conversation = app[CONVERSATION]
    inbound_log = app[INBOUND_LOG]
    quick = getattr(conversation, "quick", None)  # bot.conversation.QuickConversation
    outcome = await inbound_log.respond_once(
        inbound.channel,
        key,
        lambda: conversation.handle(inbound),
        deadline=deadline,
        quick=None if quick is None else lambda: quick(inbound, key),
        answered=answered,
    )
    if outcome.delivers_late:
        inbound_log.spawn(deliver_late(inbound_log.store, outcome, deliver))
    return outcome


async def respond(
    app: web.Application,
    inbound: Inbound,
    key: str,
    *,
    deadline: float,
    render: Callable[[str | None], web.Response],
    deliver: Deliver,
) -> web.Response:
    """The webhook's response to `inbound`: `render(text)` of the answer ready by
    `deadline` (None: nothing now, or nothing at all); a 500 if its handler raised."""
    try:
        outcome = await answer(app, inbound, key, deadline=deadline, deliver=deliver)
    except HandlingFailed:
        log.exception("no answer for a %s message", inbound.channel)
        raise web.HTTPInternalServerError(text="internal error") from None
    return render(outcome.text)
