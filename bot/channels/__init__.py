"""Channel adapters: the only code that knows XML, AES, TwiML or signatures.

Each adapter turns its wire format into a `bot.conversation.Inbound`, hands it to
`app[CONVERSATION]` and renders the `Reply` for the wire (STYLE.md "Channels are
adapters"). `setup(app)` adds the webhooks (WeChat only when `wechat.enabled`)
and the inbound log they share for de-duplication.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bot.appkeys import ENGINE, INBOUND_LOG, SETTINGS
from bot.channels import aliyun_sms, twilio_sms, wechat
from bot.inbound_log import InboundLog


async def _inbound_log_ctx(app: web.Application) -> AsyncIterator[None]:
    inbound_log = InboundLog(app[ENGINE])
    app[INBOUND_LOG] = inbound_log
    yield
    await inbound_log.aclose()


def setup(app: web.Application) -> None:
    """Add the channel webhooks. Call after the database and HTTP-session contexts."""
    app.cleanup_ctx.append(_inbound_log_ctx)
    twilio_sms.setup(app)
    aliyun_sms.setup(app)
    if app[SETTINGS].wechat.enabled:
        wechat.setup(app)
