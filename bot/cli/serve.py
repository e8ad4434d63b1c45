"""`memberbot serve [--host H] [--port P] [--demo]`: the webhooks, the operator API, the
staff console and (with `scheduler.enabled`) the daily planner and the outbox sender in
one process; the schema is migrated on start (CONTRACT.md "Command line")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import create_app
from bot.appkeys import SESSIONS
from bot.cli.common import PROG, CliError, check_sqlite_file, cli_settings, db_error, masked_url
from bot.demo import DEMO_API_KEY, demo_overrides, seed_demo
from bot.logsetup import configure_logging
from models.clock import brand_today
from models.db import transaction
from models.settings import Settings
from scheduler.service import TemplateRuleError, check_templates

log = logging.getLogger("memberbot.cli")

LISTEN_BACKLOG = 1024
"""Connections the kernel queues before the server accepts them (aiohttp's default is
128). When more arrive at once — a burst of WeChat messages — the rest of the
connection attempts are dropped and retried by the sender a second later: a second
of WeChat's five gone before the bot sees the request. (Capped by the kernel's
`net.core.somaxconn`.)"""


async def start_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    demo: bool = False,
    background: bool = False,
) -> tuple[web.AppRunner, str]:
    """Build the app, migrate, optionally seed the demo, and listen. Returns (runner, url).

    `background=True` (what `memberbot serve` uses) refuses templates that break the
    message rules and starts the scheduler and the outbox sender inside the app.

    Stop with `await runner.cleanup()`. `port=0` picks a free port (the URL has the real one).
    """
    host = host if host is not None else settings.server.host
    port = port if port is not None else settings.server.port
    check_sqlite_file(settings)
    if background:
        try:
            check_templates(settings)
        except TemplateRuleError as exc:
            raise CliError(str(exc)) from None
    app = create_app(settings, background=background)
    # keepalive_timeout also bounds a request whose headers never finish arriving:
    # aiohttp closes a connection still waiting for a complete request at that time.
    runner = web.AppRunner(  # access_log=None: bot.access writes the access lines
        app, handle_signals=False, keepalive_timeout=settings.server.idle_timeout, access_log=None
    )
    try:
        await runner.setup()  # runs the cleanup contexts: engine + migration
    except (SQLAlchemyError, OSError) as exc:
        await runner.cleanup()
        raise db_error(exc, settings) from None
    try:
        if demo:
            await _seed_demo(app[SESSIONS], settings)
        site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
        try:
            await site.start()
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound[1]}"


async def _seed_demo(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    try:
        async with transaction(sessions) as session:
            await seed_demo(session, settings=settings, today=brand_today(settings.brand.tz))
    except SQLAlchemyError as exc:
        raise db_error(exc, settings) from None
    log.info(
        "demo data ready: store DEMO01, assistants A001/A002 (tokens demo-token-A001/-A002), "
        "members +8613800138001 to +8613800138005 (see bot/demo.py)"
    )


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    runner, url = await start_server(
        settings, host=args.host, port=args.port, demo=args.demo, background=True
    )
    print(f"{PROG} listening on {url} (database: {masked_url(settings.database.url)})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    return 0


def serve_settings(args: argparse.Namespace) -> tuple[Settings, str | None]:
    """The settings for `serve`, and a warning to print. With --demo, the demo brand name
    when none is configured, and with no api.keys configured the demo operator key (as
    overrides: the settings stay frozen)."""
    settings = cli_settings(args)
    if not args.demo:
        return settings, None
    overrides = demo_overrides(settings)
    if settings.api.keys:
        return (cli_settings(args, overrides=overrides) if overrides else settings), None
    settings = cli_settings(args, overrides={**overrides, "api": {"keys": [DEMO_API_KEY]}})
    return settings, (
        f"no api.keys configured; --demo accepts the demo operator key {DEMO_API_KEY!r} "
        "- do not expose this server"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    configure_logging(sys.stderr)  # the default until the settings are read
    settings, warning = serve_settings(args)
    configure_logging(sys.stderr, settings.logging)
    if warning:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return asyncio.run(_serve(settings, args))
