"""`memberbot vouchers show|use|void CODE` and `memberbot vouchers list PHONE`: the till's
voucher steps from the command line, through `models.voucher_till` (the same rules as
`POST /api/vouchers/{code}/use|void`).

    memberbot vouchers show CODE
    memberbot vouchers use CODE --store S001 [--receipt R123] [--by NAME]
    memberbot vouchers void CODE --reason TEXT [--by NAME]
    memberbot vouchers list PHONE

Prints one line per voucher on stdout (the member's phone masked) and exits 0. A
voucher that cannot be used or voided prints one line on stderr and exits 1 (the
reason: used, expired, void); an unknown code, store or member exits 2.
"""

from __future__ import annotations

import argparse

from bot.cli.common import CliError, open_database, runner
from models import voucher_till, vouchers
from models.clock import brand_today
from models.db import transaction
from models.errors import Conflict, DomainError, NotFound
from models.members import get_member_by_phone
from models.phone import mask_phone
from models.settings import Settings
from models.tables.ledger import Voucher
from models.tables.members import Member
from models.types import utcnow

REFUSED = 1
BAD_INPUT = 2


def add_vouchers_command(subparsers, parent_parser: argparse.ArgumentParser) -> None:
    cmd = subparsers.add_parser(
        "vouchers", parents=[parent_parser], help="look up, use or void a voucher at the till"
    )
    cmd.add_argument("action", choices=("show", "use", "void", "list"))
    cmd.add_argument("target", metavar="CODE|PHONE", help="the voucher code (list: a phone)")
    cmd.add_argument("--store", metavar="S", help="use: the store code")
    cmd.add_argument("--receipt", metavar="R", help="use: the receipt number")
    cmd.add_argument("--reason", metavar="TEXT", default="", help="void: why (required)")
    cmd.add_argument("--by", metavar="NAME", default="", help="who acts (recorded)")
    cmd.set_defaults(run=runner(cmd_vouchers))


def describe(voucher: Voucher, member: Member | None, today) -> str:
    phone = mask_phone(member.phone) if member else "-"
    state = voucher_till.state(voucher, today)
    return f"{voucher.code} {voucher.value:.2f} {state} expires {voucher.expires_on} {phone}"


async def cmd_vouchers(settings: Settings, args: argparse.Namespace) -> int:
    tz = settings.brand.tz
    actor = f"cli:{args.by}" if args.by else "cli"
    if args.action == "use" and not args.store:
        raise CliError("use needs --store", BAD_INPUT)
    async with open_database(settings) as sessions:
        try:
            async with transaction(sessions) as session:
                today = brand_today(tz)
                if args.action == "list":
                    member = await get_member_by_phone(session, phone=args.target)
                    if member is None:
                        raise NotFound("no member with this phone", "phone")
                    held = await vouchers.member_vouchers(session, member_id=member.id, today=today)
                    lines = [describe(v, member, today) for v in held] or ["no vouchers"]
                else:
                    if args.action == "use":
                        voucher, _ = await voucher_till.use_voucher(
                            session,
                            tz=tz,
                            code=args.target,
                            store_code=args.store,
                            receipt_no=args.receipt,
                            actor=actor,
                            now=utcnow(),
                        )
                    elif args.action == "void":
                        voucher = await voucher_till.void_voucher(
                            session,
                            rules=settings.loyalty,
                            tz=tz,
                            code=args.target,
                            reason=args.reason,
                            actor=actor,
                            now=utcnow(),
                        )
                    else:
                        voucher = await voucher_till.find_voucher(session, code=args.target)
                    member = await session.get(Member, voucher.member_id)
                    lines = [describe(voucher, member, today)]
        except Conflict as exc:
            raise CliError(exc.message, REFUSED) from None
        except DomainError as exc:
            raise CliError(exc.message, BAD_INPUT) from None
    print("\n".join(lines))
    return 0
