"""The template check and the staff reports of `memberbot` (CONTRACT.md "Command line").

    memberbot lint [--templates DIR]
    memberbot report birthdays [--month YYYY-MM] [--out F]

`add_report_commands(subparsers, parent_parser)` adds them to `bot.cli`'s parser, as
`bot.cli.plan.add_commands` adds ``plan`` and ``outbox``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

from bot.cli.common import CliError, open_database, runner
from bot.csvio.sheet import sheet_file, sheet_stdout
from models.clock import brand_today
from models.kinds import KINDS, LOCALES
from models.settings import Settings
from scheduler.jobs import birthday_report_month, month_end_birthdays
from scheduler.message_rules import lint_all


def _month(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a month YYYY-MM, got {text!r}") from None


def add_report_commands(subparsers, parent_parser: argparse.ArgumentParser) -> None:
    """Add ``lint`` and ``report`` to `bot.cli`'s subparsers."""
    lint = subparsers.add_parser(
        "lint", parents=[parent_parser], help="check every message template against the rules"
    )
    lint.add_argument(
        "--templates",
        metavar="DIR",
        type=Path,
        help="check the templates in DIR (<locale>/<kind>.txt) instead of the built-in ones",
    )
    lint.set_defaults(func=cmd_lint, run=runner(cmd_lint))

    report = subparsers.add_parser(
        "report", parents=[parent_parser], help="staff reports (next month's birthdays)"
    )
    report.add_argument("kind", choices=("birthdays",))
    report.add_argument(
        "--month", type=_month, metavar="YYYY-MM", help="default: next month (brand time)"
    )
    report.add_argument("--out", metavar="F", help="output file (default: standard output)")
    report.set_defaults(func=cmd_report, run=runner(cmd_report))


async def cmd_lint(settings: Settings, args: argparse.Namespace) -> int:
    return lint_templates(settings, getattr(args, "templates", None))


def lint_templates(settings: Settings, folder: Path | None = None) -> int:
    """Print each violation as ``path: rule: detail``; the exit code (1 on a violation)."""
    if folder is not None and not Path(folder).is_dir():
        raise CliError(f"no template folder {folder}")
    found = lint_all(folder, settings.messaging.lexicon)
    for path, v in found:
        print(f"{path}: {v.rule}: {' '.join(v.detail.split())}")
    checked = len(KINDS) * len(LOCALES)
    if found:
        print(f"{checked} templates checked, {len(found)} violation(s)", file=sys.stderr)
        return 1
    print(f"{checked} templates checked, no violations")
    return 0


REPORT_COLUMNS = ("store", "member", "birthday", "calendar", "assistant", "phone", "stopped")


async def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """Next month's birthdays per store as CSV (UTF-8 with a BOM, like the member sheet);
    a file is written under a temporary name and renamed at the end (`bot.csvio.sheet`)."""
    month = args.month or birthday_report_month(brand_today(settings.brand.tz))
    async with open_database(settings) as sessions, sessions() as session:
        rows = await month_end_birthdays(session, settings=settings, month=month)
    if not args.out:
        with sheet_stdout() as out:
            _write_report(out, rows)
        return 0
    target = Path(args.out)
    with sheet_file(target) as fh:
        _write_report(fh, rows)
    print(f"birthdays {month:%Y-%m}: {len(rows)} rows written to {target}", file=sys.stderr)
    return 0


def _write_report(out: TextIO, rows) -> None:
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for r in rows:
        writer.writerow(
            (r.store, r.member, r.birthday.isoformat(), r.calendar, r.assistant, r.phone,
             "yes" if r.stopped else "")
        )  # fmt: skip
