"""Typed keys for what the aiohttp application shares (no module-level singletons)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from aiohttp import ClientSession, web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.conversation import Conversation
from bot.inbound_log import InboundLog
from models.rules import LoyaltyRules
from models.settings import Settings
from scheduler.send.providers import SmsSender
from scheduler.send.sender import Sender
from scheduler.send.transports import Transports

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

# The background work of `memberbot serve` (bot.background).
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)
"""The running APScheduler (only when ``scheduler.enabled``)."""
SENDER = web.AppKey("outbox_sender", Sender)
TRANSPORTS = web.AppKey("outbox_transports", Transports)
"""Set before start-up to give the sender its transports (tests); else built from the app."""
CLOCK = web.AppKey("scheduler_clock", Callable[[], datetime])
"""Set before start-up to fix the time the scheduler reads (tests); else `utcnow`."""
CATCH_UP = web.AppKey("catch_up_task", asyncio.Task)
"""The catch-up run started at start-up, when there was one to do."""
RUNNING = web.AppKey("daily_runs", set)
"""The daily runs under way (cancelled and awaited on shutdown)."""
