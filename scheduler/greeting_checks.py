"""What a personal greeting (`scheduler.greetings`) is checked against: its occasion and
note, the message rules, its key in the outbox, the assistant's hourly rate and the
member's reach (WeChat window, a bad number, the weekly cap), read from the outbox.
No function here commits."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import day_end, day_start
from models.db import is_postgres
from models.errors import DomainError
from models.kinds import GREETING_KINDS, GREETING_OCCASIONS
from models.outbox.states import SUPPRESSED
from models.settings import Settings
from models.tables.members import Assistant, Identity, Member
from models.tables.outbox import OutboxMessage
from scheduler import message_rules, policy, render
from scheduler.message_rules import Violation

KIND = "personal_greeting"
OCCASIONS = GREETING_OCCASIONS
"""What an assistant may greet for (CONTRACT.md: the greeting kinds or ``other``)."""
NOTE_MAX = 200
"""Characters of the assistant's note, after whitespace is collapsed."""
RATE_WINDOW = timedelta(hours=1)

UNKNOWN_OCCASION = "unknown_occasion"
NOTE_TOO_LONG = "note_too_long"
NOTE_INVALID = "note_invalid"
RATE_LIMITED = "rate_limited"


# --------------------------------------------------------------------------- errors


class GreetingRefused(DomainError):
    """The greeting breaks a rule (or its occasion / note is unusable): 422, nothing saved."""

    status = 422

    def __init__(self, rule: str, field: str, detail: str | None = None):
        super().__init__(detail or rule.replace("_", " "), field)
        self.rule = rule

    def details(self) -> dict[str, Any]:
        return {"rule": self.rule}


class RateLimited(DomainError):
    """The assistant queued `limit` greetings in the last hour: 429, nothing saved."""

    status = 429

    def __init__(self, limit: int, retry_after: int):
        super().__init__(
            f"at most {limit} greetings per assistant per hour; try again in {retry_after} seconds",
            "assistant",
        )
        self.reason = RATE_LIMITED
        self.limit = limit
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"reason": self.reason}


# --------------------------------------------------------------------------- input


def clean_note(note: str | None) -> str:
    """The note as it goes into the text: whitespace runs (newlines too) become one
    space; at most `NOTE_MAX` characters; no control characters (`GreetingRefused`)."""
    text = " ".join((note or "").split())
    if len(text) > NOTE_MAX:
        raise GreetingRefused(
            NOTE_TOO_LONG, "note", f"the note has {len(text)} characters; at most {NOTE_MAX}"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") for c in text):
        raise GreetingRefused(NOTE_INVALID, "note", "the note contains control characters")
    return text


def check_occasion(occasion: str) -> str:
    if occasion not in OCCASIONS:
        raise GreetingRefused(
            UNKNOWN_OCCASION,
            "occasion",
            f"unknown occasion; expected one of {', '.join(OCCASIONS)}",
        )
    return occasion


def rules_kind(occasion: str) -> str:
    """The kind whose rules the text is checked by: the occasion's own greeting kind."""
    return occasion if occasion in GREETING_KINDS else KIND


def checked_text(
    settings: Settings, *, locale: str, occasion: str, note: str, values: dict
) -> tuple[str, Violation | None]:
    """The greeting's text in `locale` and the first message rule it breaks, checked as
    the occasion's kind (`rules_kind`); None = it passes."""
    text = render.render_message(KIND, locale, occasion=occasion, note=note, **values)
    found = message_rules.check(
        rules_kind(occasion),
        text,
        locale=locale,
        lexicon=settings.messaging.lexicon,
        store_name=values["store_name"],
        assistant_name=values["assistant_name"],
        exempt=message_rules.data_phrases(values, locale),
    )
    return text, (found[0] if found else None)


def greeting_key(*, occasion: str, day: date, assistant_id: int, note: str) -> str:
    """The outbox ``occasion`` of a personal greeting (its unique key with member and kind):
    ``<occasion>:<brand day>:<assistant id>:<16 hex of SHA-256 of the note>`` (≤ 64 chars)."""
    digest = hashlib.sha256(note.encode("utf-8")).hexdigest()[:16]
    return f"{occasion}:{day.isoformat()}:{assistant_id}:{digest}"


# --------------------------------------------------------------------------- the outbox's reads


async def wechat_identity(
    session: AsyncSession, member_id: int
) -> policy.WeChatIdentityInfo | None:
    """The member's WeChat identity (active first, then the latest message), with the
    customer-service messages already queued or sent since that message."""
    stmt = select(Identity.address, Identity.active, Identity.last_inbound_at).where(
        Identity.member_id == member_id, Identity.channel == "wechat"
    )
    rows = list((await session.exec(stmt)).all())
    if not rows:
        return None
    openid, active, last_in = max(rows, key=lambda r: (r[1], r[2].timestamp() if r[2] else 0.0))
    used = 0
    if last_in is not None:
        count = select(func.count()).where(
            OutboxMessage.member_id == member_id,
            OutboxMessage.via == "customer_service",
            OutboxMessage.status != SUPPRESSED,
            col(OutboxMessage.send_after) >= last_in,
        )
        used = (await session.exec(count)).one()
    return policy.WeChatIdentityInfo(openid, active, last_in, used)


async def phone_bad(session: AsyncSession, member: Member) -> bool:
    stmt = select(Identity.id).where(
        Identity.channel == "sms",
        Identity.address == member.phone,
        Identity.bad == True,  # noqa: E712
    )
    return (await session.exec(stmt)).first() is not None


async def counted_this_week(session: AsyncSession, *, member_id: int, day: date, tz) -> int:
    """The member's messages the weekly cap counts for a personal greeting on `day`: every
    kind not suppressed in the 7 brand days ending on `day` (the planner's window)."""
    stmt = select(func.count()).where(
        OutboxMessage.member_id == member_id,
        OutboxMessage.status != SUPPRESSED,
        col(OutboxMessage.send_after) >= day_start(day - timedelta(days=6), tz),
        col(OutboxMessage.send_after) < day_end(day, tz),
    )
    return (await session.exec(stmt)).one()


async def existing_greeting(
    session: AsyncSession, *, member_id: int, key: str
) -> OutboxMessage | None:
    stmt = select(OutboxMessage).where(
        OutboxMessage.member_id == member_id,
        OutboxMessage.kind == KIND,
        OutboxMessage.occasion == key,
    )
    return (await session.exec(stmt)).first()


async def check_rate(
    session: AsyncSession, *, settings: Settings, assistant_id: int, now: datetime
) -> None:
    limit = settings.greetings.per_assistant_per_hour
    since = now - RATE_WINDOW
    stmt = select(func.count(), func.min(OutboxMessage.created_at)).where(
        OutboxMessage.kind == KIND,
        OutboxMessage.assistant_id == assistant_id,
        col(OutboxMessage.created_at) > since,
    )
    count, oldest = (await session.exec(stmt)).one()
    if count >= limit:
        wait = (oldest + RATE_WINDOW - now).total_seconds() if oldest else RATE_WINDOW.seconds
        raise RateLimited(limit, max(1, int(wait) + 1))


async def lock_assistant(session: AsyncSession, assistant_id: int) -> None:
    """Serialise one assistant's greetings (the rate count); SQLite already serialises."""
    if is_postgres(session):
        stmt = select(Assistant.id).where(Assistant.id == assistant_id).with_for_update()
        await session.exec(stmt)
