"""Typed keys for what the aiohttp application shares (no module-level singletons)."""

from __future__ import annotations

from aiohttp import ClientSession, web
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.conversation import Conversation
from bot.inbound_log import InboundLog
from bot.sms_sender import SmsSender
from models.rules import LoyaltyRules
from models.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
LOYALTY = web.AppKey("loyalty", LoyaltyRules)
"""`settings.loyalty`, built once (the property makes a new object on each access)."""
CONVERSATION = web.AppKey("conversation", Conversation)
"""The bot's core: the channel adapters hand it an `Inbound` and render its `Reply`."""
HTTP = web.AppKey("http", ClientSession)
"""The shared outgoing HTTP session (WeChat API calls), opened and closed with the app."""
SMS_SENDER = web.AppKey("sms_sender", SmsSender)
"""The configured SMS sender (`bot.sms_sender`): bind codes now, the outbox later."""
INBOUND_LOG = web.AppKey("inbound_log", InboundLog)
"""De-duplication and deadlines of inbound webhook messages (`bot.inbound_log`)."""
