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

The command says which database it uses (one stderr line) and refuses a SQLite file
that does not exist (`chat_database`) unless given ``--demo`` (seed the demo data,
`bot.demo`, as ``serve --demo`` does, and use the demo brand name) or ``--create``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

from bot.bot import MemberBot
from bot.conversation import Inbound
from bot.demo import seed_demo
from bot.sms_sender import open_sms_sender
from models.clock import brand_today
from models.db import make_engine, migrate, session_factory, transaction
from models.errors import InvalidInput
from models.phone import normalise_phone
from models.settings import Settings
from scheduler.send.providers import ConsoleSmsSender, SmsSender

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


class ChatRefused(Exception):
    """`memberbot chat` cannot start as asked (one line for the user)."""


def chat_database(settings: Settings, *, channel: str, sender: str, create: bool) -> str | None:
    """Check a chat before it starts; the absolute path of its SQLite file (None for
    another database) for the "which database" line.

    A SQLite file that does not exist is refused unless `create` (--demo / --create):
    the default `memberbot.db` is relative to the working folder, and a chat started in
    another folder than `serve --demo` would otherwise talk to a new, empty database.
    """
    if channel == "sms":
        try:
            normalise_phone(sender)
        except InvalidInput as exc:
            raise ChatRefused(f"--from: {exc.message}") from None
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).resolve()
    if not path.exists() and not create:
        raise ChatRefused(
            f"no database at {path}: run `memberbot serve --demo` there first, point "
            "--config / database.url at yours, or give --demo (demo data) or --create (empty)"
        )
    return str(path)


async def run_chat(
    settings: Settings,
    *,
    channel: str,
    sender: str,
    input_lines: Iterable[str] | None = None,
    out: TextIO = sys.stdout,
    demo: bool = False,
) -> int:
    """Run a terminal conversation; the exit status (2 for a sender that is no phone on SMS).
    `demo`: seed the demo data first (`bot.demo`, idempotent)."""
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
        sessions = session_factory(engine)
        if demo:
            async with transaction(sessions) as session:
                await seed_demo(session, settings=settings, today=brand_today(settings.brand.tz))
        async with _sms_sender(settings, out) as sms:
            bot = MemberBot(settings=settings, sessions=sessions, sms_sender=sms)
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
