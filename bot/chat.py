"""`memberbot chat`: talk to the bot in the terminal through the same `MemberBot` the
webhooks use (CONTRACT.md "Command line").

Each line typed is one inbound message from `sender` on `channel` ("sms": the
sender is a phone number; "wechat": an openid). The reply is printed after it.
Lines starting with "/" are terminal commands, not messages:

- ``/subscribe``, ``/unsubscribe`` — the WeChat follow / unfollow events;
- ``/click KEY`` — a WeChat menu click (keys in `bot.router.MENU_KEYS`);
- ``/quit`` (or end of input) — leave.

SMS the bot sends (binding codes) go through the configured sender; with the
embedded default (console) they are printed here, masked.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TextIO

from bot.bot import MemberBot
from bot.config import Settings
from bot.conversation import Inbound
from bot.sms_sender import ConsoleSmsSender, SmsSender, open_sms_sender
from models.db import make_engine, migrate, session_factory
from models.errors import InvalidInput
from models.phone import normalise_phone

PROMPT = "> "
_EVENTS = {"/subscribe": "subscribe", "/unsubscribe": "unsubscribe"}


def to_inbound(line: str, *, channel: str, sender: str) -> Inbound | None:
    """One typed line → the inbound message it stands for (None: a /quit)."""
    stripped = line.strip()
    if stripped in ("/quit", "/exit"):
        return None
    if stripped in _EVENTS:
        return Inbound(channel=channel, sender=sender, event=_EVENTS[stripped])
    if stripped.startswith("/click"):
        key = stripped.removeprefix("/click").strip()
        return Inbound(channel=channel, sender=sender, event="click", event_key=key)
    return Inbound(channel=channel, sender=sender, text=line.rstrip("\n"))


async def _stdin_lines() -> AsyncIterator[str]:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        yield line


async def _lines(input_lines: Iterable[str] | None) -> AsyncIterator[str]:
    if input_lines is None:
        async for line in _stdin_lines():
            yield line
        return
    for line in input_lines:
        yield line


@asynccontextmanager
async def _sms_sender(settings: Settings, out: TextIO) -> AsyncIterator[SmsSender]:
    if settings.sms.provider == "console":
        yield ConsoleSmsSender(out=out)
        return
    async with open_sms_sender(settings.sms) as sender:
        yield sender


async def run_chat(
    settings: Settings,
    *,
    channel: str,
    sender: str,
    input_lines: Iterable[str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run a terminal conversation; the exit status (2 for a sender that is no phone on SMS)."""
    if channel not in ("sms", "wechat"):
        print(f"memberbot: error: unknown channel {channel!r} (sms or wechat)", file=sys.stderr)
        return 2
    if channel == "sms":
        try:
            sender = normalise_phone(sender)
        except InvalidInput as exc:
            print(f"memberbot: error: --from: {exc.message}", file=sys.stderr)
            return 2
    interactive = input_lines is None and sys.stdin.isatty()
    engine = make_engine(settings.database.url, echo=settings.database.echo)
    try:
        await migrate(engine)
        async with _sms_sender(settings, out) as sms:
            bot = MemberBot(settings=settings, sessions=session_factory(engine), sms_sender=sms)
            print(f"chatting as {sender} on {channel}; /quit to leave", file=out, flush=True)
            if interactive:
                print(PROMPT, end="", file=out, flush=True)
            async for line in _lines(input_lines):
                inbound = to_inbound(line, channel=channel, sender=sender)
                if inbound is None:
                    break
                if not line.strip() and interactive:
                    print(PROMPT, end="", file=out, flush=True)
                    continue
                reply = await bot.handle(inbound)
                print(reply.text if reply.text is not None else "(no reply)", file=out)
                print(file=out, flush=True)
                if interactive:
                    print(PROMPT, end="", file=out, flush=True)
    finally:
        await engine.dispose()
    return 0
