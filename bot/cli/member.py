"""`memberbot member export PHONE` / `memberbot member erase PHONE` (CONTRACT.md): a
member's data rights from the command line (`models.member_data`, docs/privacy.md).

`export` prints one JSON document on standard output; `erase` prints one line saying
what was removed — or that no member has the phone (exit 0 either way: erasing twice
is not an error). A bad phone number is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse

from bot.cli.common import CliError, open_database, runner
from models import member_data
from models.db import transaction
from models.errors import InvalidInput
from models.members import get_member_by_phone
from models.phone import mask_phone, normalise_phone
from models.settings import Settings
from models.types import utcnow


def add_member_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    member = sub.add_parser("member", parents=[common], help="a member's data: export or erase")
    actions = member.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    export = actions.add_parser("export", parents=[common], help="everything held, as JSON")
    export.add_argument("phone", metavar="PHONE")
    export.set_defaults(run=runner(_export))
    erase = actions.add_parser(
        "erase", parents=[common], help="remove the member's personal data (idempotent)"
    )
    erase.add_argument("phone", metavar="PHONE")
    erase.set_defaults(run=runner(_erase))


def _phone(text: str) -> str:
    try:
        return normalise_phone(text)
    except InvalidInput as exc:
        raise CliError(str(exc)) from None


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    phone = _phone(args.phone)
    async with open_database(settings) as sessions, transaction(sessions) as session:
        member = await get_member_by_phone(session, phone=phone)
        if member is None:
            raise CliError(f"no member has the phone {mask_phone(phone)}", code=1)
        document = await member_data.export_member(session, member)
    print(member_data.export_json(document))
    return 0


async def _erase(settings: Settings, args: argparse.Namespace) -> int:
    phone = _phone(args.phone)
    async with open_database(settings) as sessions, transaction(sessions) as session:
        member = await get_member_by_phone(session, phone=phone)
        if member is None:
            print(f"no member has the phone {mask_phone(phone)}: nothing to erase")
            return 0
        counts = await member_data.erase_member(session, member, now=utcnow())
    changed = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n)
    print(f"erased member {member.id} ({mask_phone(phone)}): {changed}")
    return 0
