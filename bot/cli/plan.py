"""The scheduler's commands of `memberbot` (CONTRACT.md "Command line").

    memberbot plan --date YYYY-MM-DD [--dry-run] [--json]
    memberbot outbox [--status S] [--json]

`add_commands(subparsers, parent_parser)` adds them to `bot.cli`'s parser (``lint`` and
``report`` are in `bot.cli.report`). Each sets ``func`` (``async def f(settings, args)
-> int``, the testable core) and ``run`` (``f(args) -> int``, what `bot.cli.main` calls:
it loads the settings and runs ``func``). Bad input raises `bot.cli.common.CliError` (one
line, exit 2).

`plan --date D` without ``--dry-run``:

- D is the brand's today → the full daily run (`scheduler.jobs.run_daily`: upkeep,
  plan, card steps, the day's PlanRun), exactly what `serve`'s scheduler does, so a
  deployment with ``scheduler.enabled = false`` can run it from cron. When the day's
  run has already finished (or another replica is running it), only the plan is
  saved again — which queues nothing already queued.
- any other day → only the plan is saved (`plan_day` + `save_plan`). The upkeep
  (points and voucher expiry, tier review, redistribution, card steps) is never
  run for a day other than today: it would expire points or lower tiers early.

Either way the result is one summary line; exit 1 when a step of the daily run
failed (logged on stderr).

`plan --dry-run` changes nothing and prints what would be queued: messages
already in the outbox for their occasion and messages that would be suppressed are
left out. ``--json``: one object per line, ``member`` (E.164), ``channel``,
``kind``, ``text``, ``send_after`` (ISO 8601 with the brand's offset), plus
``occasion``, ``via``, ``locale``.

`outbox --json` prints the same keys plus ``status``, ``reason`` (null unless the
message was suppressed, failed or undeliverable), ``id``, ``attempts``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from typing import Any, TextIO

from sqlmodel import col, select

from bot.cli.common import CliError, open_database, runner
from models.clock import brand_today
from models.db import transaction
from models.kinds import KINDS
from models.outbox.states import QUEUED, STATUSES
from models.settings import Settings
from models.tables.members import Member
from models.tables.outbox import OutboxMessage
from models.types import utcnow
from scheduler.jobs import plan_and_save, run_daily
from scheduler.plan.plan_save import pending_only
from scheduler.plan.planner import iter_plan
from scheduler.service import replica_name

PAGE = 1000


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def add_commands(subparsers, parent_parser: argparse.ArgumentParser) -> None:
    """Add ``plan`` and ``outbox`` to `bot.cli`'s subparsers."""
    plan = subparsers.add_parser(
        "plan", parents=[parent_parser], help="run the daily planner for a date"
    )
    plan.add_argument("--date", required=True, type=_day, metavar="YYYY-MM-DD")
    plan.add_argument("--dry-run", action="store_true", help="print what would be queued")
    plan.add_argument("--json", action="store_true", help="one JSON object per message")
    plan.set_defaults(func=cmd_plan, run=runner(cmd_plan))

    out = subparsers.add_parser(
        "outbox", parents=[parent_parser], help="list outgoing messages and their states"
    )
    out.add_argument("--status", metavar="S", help=f"only this state: {', '.join(STATUSES)}")
    out.add_argument("--json", action="store_true", help="one JSON object per message")
    out.set_defaults(func=cmd_outbox, run=runner(cmd_outbox))


# --------------------------------------------------------------------------- plan


def _local_iso(at: datetime, settings: Settings) -> str:
    return at.astimezone(settings.brand.tz).isoformat()


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def cmd_plan(settings: Settings, args: argparse.Namespace) -> int:
    async with open_database(settings) as sessions:
        if args.dry_run:
            return await _dry_run(sessions, settings, args)
        return await _plan(sessions, settings, args.date)


async def _dry_run(sessions, settings: Settings, args: argparse.Namespace) -> int:
    """Streamed a batch of members at a time (`iter_plan`, as the daily job plans), so
    memory stays that of one batch whatever the number of members."""
    count = 0
    table = _StreamedTable(("send_after", "member", "channel", "kind", "text"), _WIDTHS)
    async with sessions() as session:  # read only; closing rolls the transaction back
        async for batch in iter_plan(session, settings=settings, day=args.date):
            for p in await pending_only(session, batch):
                if p.status != QUEUED:
                    continue
                count += 1
                if args.json:
                    print(json.dumps(_dry_line(p, settings), ensure_ascii=False))
                else:
                    table.row((_local_iso(p.send_after, settings)[:16].replace("T", " "),
                               p.phone, p.channel, p.kind, _one_line(p.text)))  # fmt: skip
    if not args.json:
        print(f"{count} message(s) would be queued for {args.date} (dry run: nothing changed)")
    return 0


def _dry_line(p, settings: Settings) -> dict[str, Any]:
    return {
        "member": p.phone,
        "channel": p.channel,
        "kind": p.kind,
        "text": p.text,
        "send_after": _local_iso(p.send_after, settings),
        "occasion": p.occasion,
        "via": p.via,
        "locale": p.locale,
    }


_WIDTHS = (16, 16, 7, max(len(k) for k in KINDS))
"""Column widths of the streamed dry-run table: a local minute, an E.164 number, a
channel, a kind (the text comes last, unpadded)."""


class _StreamedTable:
    """A table printed row by row with fixed column widths (the header before the first)."""

    def __init__(self, header: tuple[str, ...], widths: tuple[int, ...]):
        self._header, self._widths, self._started = header, widths, False

    def row(self, cells: tuple[str, ...]) -> None:
        if not self._started:
            self._started = True
            self._print(self._header)
        self._print(cells)

    def _print(self, cells: tuple[str, ...]) -> None:
        padded = [str(c).ljust(w) for c, w in zip(cells, self._widths, strict=False)]
        print("  ".join([*padded, str(cells[-1])]))


async def _plan(sessions, settings: Settings, day: date) -> int:
    now = utcnow()
    if day == brand_today(settings.brand.tz, now):
        result = await run_daily(
            sessions, settings=settings, day=day, now=now, replica=f"cli {replica_name()}"
        )
        if result is not None:
            upkeep = ", ".join(f"{k} {v}" for k, v in result.upkeep.items())
            failed = f"; failed: {', '.join(result.failed)}" if result.failed else ""
            print(
                f"plan {day}: {result.queued} queued, {result.suppressed} suppressed, "
                f"{result.already} already in the outbox; daily run: {upkeep}{failed}"
            )
            return 1 if result.failed else 0
    async with transaction(sessions) as session:
        saved = await plan_and_save(session, settings=settings, day=day, now=now)
    print(
        f"plan {day}: {saved.queued} queued, {saved.suppressed} suppressed, "
        f"{saved.already} already in the outbox"
    )
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if not rows:
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(r, widths, strict=False)]
        print("  ".join([*cells, str(r[-1])]), file=out)


# --------------------------------------------------------------------------- outbox


async def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    if args.status is not None and args.status not in STATUSES:
        raise CliError(f"unknown status {args.status!r} (expected one of: {', '.join(STATUSES)})")
    count = 0
    rows: list[tuple[str, ...]] = []
    async with open_database(settings) as sessions, sessions() as session:
        after = 0
        while True:
            stmt = (
                select(OutboxMessage, Member.phone)
                .join(Member, col(Member.id) == OutboxMessage.member_id)
                .where(col(OutboxMessage.id) > after)
                .order_by(col(OutboxMessage.id))
                .limit(PAGE)
            )
            if args.status is not None:
                stmt = stmt.where(OutboxMessage.status == args.status)
            page = list(await session.exec(stmt))
            if not page:
                break
            after = page[-1][0].id
            for m, phone in page:
                count += 1
                if args.json:
                    print(json.dumps(_outbox_line(m, phone, settings), ensure_ascii=False))
                else:
                    rows.append(
                        (str(m.id), _local_iso(m.send_after, settings)[:16].replace("T", " "),
                         m.status, phone, m.channel, m.kind, m.reason or "", _one_line(m.text, 40))
                    )  # fmt: skip
    if not args.json:
        _table(("id", "send_after", "status", "member", "channel", "kind", "reason", "text"), rows)
        print(f"{count} message(s)" + (f" {args.status}" if args.status else ""))
    return 0


def _outbox_line(m, phone: str, settings: Settings) -> dict[str, Any]:
    return {
        "member": phone,
        "channel": m.channel,
        "kind": m.kind,
        "text": m.text,
        "send_after": _local_iso(m.send_after, settings),
        "status": m.status,
        "reason": m.reason,
        "id": m.id,
        "occasion": m.occasion,
        "via": m.via,
        "attempts": m.attempts,
        "request_id": m.request_id,
    }

