"""`memberbot import members|purchases FILE.csv` and `memberbot export members [--out F]`:
the member and purchase sheets in and out (CONTRACT.md "Command line", `bot/csvio/`).

`import` exits 1 when some rows were rejected (the summary on stdout names each by line)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from bot.cli.common import PROG, CliError, cli_settings, open_database
from bot.csvio.export import export_members
from bot.csvio.members import import_members
from bot.csvio.purchases import import_purchases
from bot.csvio.reading import check_file
from bot.csvio.sheet import sheet_file, sheet_stdout
from models.clock import brand_today
from models.settings import Settings


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    # Check the file before touching the database, so a typo fails fast.
    total = check_file(path, args.kind)
    tz = settings.brand.tz
    async with open_database(settings) as sessions:
        if args.kind == "members":
            summary = await import_members(
                sessions,
                rules=settings.loyalty,
                tz=tz,
                path=path,
                today=brand_today(tz),
                batch_size=args.batch_size,
                progress=True,
                total_rows=total,
                bulk=not args.one_by_one,
            )
        else:
            summary = await import_purchases(
                sessions,
                rules=settings.loyalty,
                tz=tz,
                path=path,
                batch_size=args.batch_size,
                progress=True,
                total_rows=total,
                bulk=not args.one_by_one,
            )
    for warning in summary.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    for line in summary.lines():
        print(line)
    return summary.exit_code


def cmd_import(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    return asyncio.run(_import(cli_settings(args), args))


async def _export(settings: Settings, out: TextIO) -> int:
    async with open_database(settings) as sessions:
        return await export_members(sessions, out=out, tz=settings.brand.tz)


def cmd_export(args: argparse.Namespace) -> int:
    """The sheet is UTF-8 with a BOM (Excel then reads Chinese correctly). A file is
    written under a temporary name and renamed at the end: never a half-written sheet
    (`bot.csvio.sheet`)."""
    settings = cli_settings(args)
    if not args.out:
        with sheet_stdout() as out:
            asyncio.run(_export(settings, out))
        return 0
    target = Path(args.out)
    with sheet_file(target) as fh:
        count = asyncio.run(_export(settings, fh))
    print(f"members: {count} rows written to {target}", file=sys.stderr)
    return 0
