"""`memberbot chat [--channel sms|wechat] [--demo] [--create] [--from ID]`: talk to the bot
in the terminal through the same handlers as the webhooks (`bot.chat`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.exc import SQLAlchemyError

from bot.chat import ChatRefused, chat_database, run_chat
from bot.cli.common import PROG, CliError, check_sqlite_file, cli_settings, db_error, masked_url
from bot.demo import demo_overrides


def cmd_chat(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    if args.demo:
        overrides = demo_overrides(settings)
        settings = cli_settings(args, overrides=overrides) if overrides else settings
    sender = args.sender or ("+8613800138001" if args.channel == "sms" else "o_chat_demo")
    check_sqlite_file(settings)
    try:
        shown = chat_database(
            settings, channel=args.channel, sender=sender, create=args.demo or args.create
        )
    except ChatRefused as exc:
        raise CliError(str(exc)) from None
    print(f"{PROG} chat: database {shown or masked_url(settings.database.url)}", file=sys.stderr)
    try:
        return asyncio.run(run_chat(settings, channel=args.channel, sender=sender, demo=args.demo))
    except (SQLAlchemyError, OSError) as exc:
        raise db_error(exc, settings) from None
