"""What a channel adapter hands the bot and gets back — plain values, no wire formats.

The WeChat and SMS adapters (`bot/channels/`) and `memberbot chat` turn their
wire format into an `Inbound`, call `Conversation.handle`, and render the
`Reply` for the wire. Only the adapters know XML, AES, TwiML or signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Channel = Literal["wechat", "sms", "console"]


@dataclass(frozen=True, slots=True)
class Inbound:
    channel: Channel
    sender: str
    """WeChat openid, or the E.164 phone number for SMS and console."""
    text: str = ""
    at: datetime | None = None
    event: str | None = None
    """WeChat events: "subscribe", "unsubscribe", "click" (menu); None for a text message."""
    event_key: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    text: str | None
    """None: answer nothing (e.g. the unsubscribe event, which WeChat never shows)."""
    effects: tuple[str, ...] = field(default=())
    """Names of what the handler changed (for logs and tests): "redeemed", "stopped", …"""


class Conversation(Protocol):
    async def handle(self, inbound: Inbound) -> Reply: ...


class QuickConversation(Conversation, Protocol):
    """A conversation that can also answer some messages without a claim in the inbound
    log (`bot.inbound_log.InboundLog.respond_once`, `quick=`): messages that change
    nothing, from a read that also shows the log does not have `key` yet."""

    async def quick(self, inbound: Inbound, key: str) -> Reply | None: ...
