"""`memberbot greet --assistant CODE --member PHONE --occasion O [--note TEXT]`.

An assistant's personal greeting from the command line, through the same module as
`POST /api/greetings` (`scheduler.greetings`): same ownership check, message rules,
duplicate key, rate limit, outbox, channel choice, quiet hours and weekly cap.

Prints one line on stdout and exits 0 when the greeting is in the outbox, e.g.

    queued greeting #12 to +86138****8000: channel sms, send_after 2026-12-01T09:00:00+08:00
    suppressed greeting #13 to +86138****8001: reason stopped
    already queued greeting #12 to +86138****8000: channel sms, send_after …

A refused greeting prints one line on stderr (`memberbot: error: …`), never a
traceback: exit 1 when the greeting breaks a rule, the member is not the
assistant's or the assistant is over the hourly limit; exit 2 for bad input (an
unknown or inactive assistant, an unknown member or a malformed phone number).
"""

from __future__ import annotations

import argparse

from bot.cli.common import CliError, open_database, runner
from models.db import transaction
from models.errors import DomainError, NotFound
from models.members import get_member_by_phone
from models.outbox.states import SUPPRESSED
from models.ownership import NotOwner
from models.phone import mask_phone, normalise_phone
from models.settings import Settings
from models.stores import get_assistant
from models.types import utcnow
from scheduler import greetings
from scheduler.greeting_checks import OCCASIONS, GreetingRefused, RateLimited

REFUSED = 1
BAD_INPUT = 2


def add_greet_command(subparsers, parent_parser: argparse.ArgumentParser) -> None:
    greet = subparsers.add_parser(
        "greet", parents=[parent_parser], help="queue an assistant's personal greeting"
    )
    greet.add_argument("--assistant", required=True, metavar="ID", help="the assistant's code")
    greet.add_argument("--member", required=True, metavar="PHONE", help="the member's phone")
    greet.add_argument(
        "--occasion", required=True, metavar="O", help=f"one of: {', '.join(OCCASIONS)}"
    )
    greet.add_argument("--note", default="", metavar="TEXT", help="the assistant's own words")
    greet.set_defaults(func=cmd_greet, run=runner(cmd_greet))


def describe(message, *, phone: str, created: bool, tz) -> str:
    """The one stdout line about a greeting in the outbox (the phone masked)."""
    head = f"{'' if created else 'already '}{message.status} greeting #{message.id}"
    head += f" to {mask_phone(phone)}"
    if message.status == SUPPRESSED:
        return f"{head}: reason {message.reason}"
    when = message.send_after.astimezone(tz).isoformat()
    return f"{head}: channel {message.channel}, send_after {when}"


async def cmd_greet(settings: Settings, args: argparse.Namespace) -> int:
    try:
        phone = normalise_phone(args.member, "member")
    except DomainError as exc:
        raise CliError(exc.message, BAD_INPUT) from None
    async with open_database(settings) as sessions:
        try:
            async with transaction(sessions) as session:
                assistant = await get_assistant(session, code=args.assistant)
                if assistant is None:
                    raise NotFound(f"unknown assistant {args.assistant!r}", "assistant")
                member = await get_member_by_phone(session, phone=phone)
                if member is None:
                    raise NotFound(f"no member with phone {mask_phone(phone)}", "member")
                message, created = await greetings.queue_greeting(
                    session,
                    settings=settings,
                    assistant_id=assistant.id,
                    member_id=member.id,
                    occasion=args.occasion,
                    note=args.note,
                    now=utcnow(),
                )
        except GreetingRefused as exc:
            raise CliError(
                f"greeting refused ({exc.rule}, field {exc.field}): {exc.message}", REFUSED
            ) from None
        except (NotOwner, RateLimited) as exc:
            raise CliError(f"greeting refused: {exc.message}", REFUSED) from None
        except DomainError as exc:
            raise CliError(exc.message, BAD_INPUT) from None
    print(describe(message, phone=phone, created=created, tz=settings.brand.tz))
    return 0
