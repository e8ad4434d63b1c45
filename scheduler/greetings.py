"""An assistant's personal greeting (`POST /api/greetings`, `memberbot greet`, the staff
console): drafted, checked and queued under the same rules as the planner's messages.

    draft = await draft_greeting(session, settings=s, assistant_id=a, member_id=m,
                                 occasion="birthday", note="", now=now)   # preview, no writes
    message, created = await queue_greeting(session, settings=s, ...)    # the outbox row

What a greeting goes through, in this order (MESSAGING.md, DOMAIN.md §7-8):

1. The assistant must be active and own the member (`owns`): else `NotOwner` (403).
   An unknown member is `NotFound` (404).
2. The occasion must be one of `OCCASIONS` and the note at most `NOTE_MAX` characters
   (whitespace runs, newlines included, become one space): else `GreetingRefused`.
   An occasion tied to a date (birthday, wedding or join anniversary, festival, season
   start) must fall within ``[greetings] occasion_window_days`` of the sending day
   (`scheduler.occasion_window`): else `GreetingRefused` "not_near_occasion" naming why.
3. The text is rendered from ``<locale>/personal_greeting.txt`` (the occasion picks
   the wording; the note follows it) in the member's language, signed with the
   assistant's store and the assistant's name, with the stop hint, and checked by
   `scheduler.message_rules.check` *as the occasion's kind* (a ``dormant`` note may
   not pry, a ``seasonal`` one may not name products; ``other`` and
   ``personal_greeting`` are checked as ``personal_greeting``). A broken rule is
   `GreetingRefused(rule, field)` (422): field ``note`` when the text passes without
   the note, else ``occasion``. Nothing is recorded. Rules come before the duplicate
   check, so a refused request is refused every time.
4. An identical greeting already in the outbox — same assistant, member, occasion,
   note and brand day of sending — is returned as it is (``created`` False): the
   outbox's unique ``(member_id, kind, occasion)`` key holds `greeting_key`, so two
   concurrent identical requests make one row (and a retry is not rate-limited).
5. Rate limit: at most ``[greetings] per_assistant_per_hour`` new greetings per
   assistant in the last hour, counted from the outbox (``kind = personal_greeting``
   by ``assistant_id``, every status), so it holds across replicas; the assistant's
   row is locked first (PostgreSQL ``FOR UPDATE``; SQLite transactions are already
   serialised), so concurrent requests cannot overshoot. Over it: `RateLimited` (429).
6. Timing and channel, with `scheduler.policy` as the planner uses it: ``send_after``
   is the next allowed moment from `now` (send window ∩ the member's preferred
   contact time; outside it the greeting waits — possibly for the next morning, whose
   brand day is then the message's ``planned_on``); a stopped member → ``suppressed``
   "stopped"; the channel is a WeChat customer-service message while the 48-hour
   window is open at ``send_after`` (fewer than 5 sent in it), else SMS to a number
   not marked bad, else ``suppressed`` "no_channel".
7. Weekly cap: the member's messages not suppressed whose ``send_after`` falls in
   the 7 brand days ending on the sending day are counted — every kind, other personal
   greetings too; at ``messaging.weekly_cap`` or more the greeting is ``suppressed``
   "capped". A personal greeting is the assistant's extra word, not due on any day, so
   it comes last (`scheduler.policy` "Weekly cap"): the cap applies to it in full, and
   the planner does not count it, so it never takes a slot from the member's own
   service notices, the care calendar or a greeting due on its day.

A suppressed greeting is recorded (``suppressed`` with its reason), never sent.
No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import day_end, day_start, local_date
from models.db import is_postgres
from models.errors import DomainError, InvalidInput, NotFound
from models.kinds import GREETING_KINDS, GREETING_OCCASIONS, LOCALES
from models.outbox.states import QUEUED, SUPPRESSED, enqueue
from models.settings import Settings
from models.stores import authenticate_assistant as _lookup_assistant
from models.stores import hash_token
from models.tables import Assignment, Assistant, Identity, Member, OutboxMessage, Store
from scheduler import message_rules, policy, render
from scheduler.message_rules import Violation
from scheduler.occasion_window import NOT_NEAR_OCCASION, occasion_refusal

KIND = "personal_greeting"
OCCASIONS = GREETING_OCCASIONS
"""What an assistant may greet for (CONTRACT.md: the greeting kinds or ``other``)."""
NOTE_MAX = 200
"""Characters of the assistant's note, after whitespace is collapsed."""
RATE_WINDOW = timedelta(hours=1)
TOKEN_MAX = 512
"""Longer bearer tokens are refused without hashing them."""

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


class NotOwner(DomainError):
    """The member is not (or no longer) this assistant's: 403."""

    status = 403

    def __init__(self) -> None:
        super().__init__("this member is not assigned to you", "member")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GreetingDraft:
    text: str
    """Exactly what the member will receive."""
    channel: str
    """"wechat" | "sms" ("console" SMS keeps "sms", as in the outbox) | "" when suppressed."""
    send_after: datetime | None
    """The first moment it may go (aware UTC); None when suppressed."""
    violation: Violation | None
    """The first message rule the text breaks; None = it passes."""
    suppressed_reason: str | None
    """"stopped", "no_channel" or "capped"; None = it would be queued."""


@dataclass(frozen=True)
class _Prepared:
    draft: GreetingDraft
    field: str
    """The input at fault when `draft.violation` is set: "note" or "occasion"."""
    member: Member
    assistant: Assistant
    locale: str
    via: str
    address: str
    send_after: datetime
    planned_on: date
    key: str


# --------------------------------------------------------------------------- auth, ownership


async def authenticate_assistant(session: AsyncSession, *, token: str) -> Assistant | None:
    """The active assistant holding `token`, or None (tokens are stored as SHA-256 digests:
    the digest is looked up, then compared in constant time). Never logs the token."""
    if not token or len(token) > TOKEN_MAX:
        return None
    found = await _lookup_assistant(session, token=token)
    if found is None or not found.token_hash:
        return None
    if not hmac.compare_digest(found.token_hash.encode(), hash_token(token).encode()):
        return None
    return found


async def owner_id(session: AsyncSession, *, member: Member) -> int | None:
    """The assistant who owns `member` now (DOMAIN.md §8, `models.ownership`).

    The open assignment decides; a member with no open assignment (recorded without
    history, e.g. imported with an assistant) is owned by ``members.assistant_id``,
    the reading `models.ownership.on_purchase` also takes. None: unowned.
    """
    stmt = (
        select(Assignment.assistant_id)
        .where(Assignment.member_id == member.id, Assignment.ended_on == None)  # noqa: E711
        .order_by(col(Assignment.id).desc())
        .limit(1)
    )
    current = (await session.exec(stmt)).first()
    return current if current is not None else member.assistant_id


async def owns(session: AsyncSession, *, assistant_id: int, member_id: int) -> bool:
    """True when the member exists and `assistant_id` owns them now (`owner_id`)."""
    member = await session.get(Member, member_id)
    if member is None:
        return False
    return await owner_id(session, member=member) == assistant_id


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


def greeting_key(*, occasion: str, day: date, assistant_id: int, note: str) -> str:
    """The outbox ``occasion`` of a personal greeting (its unique key with member and kind):
    ``<occasion>:<brand day>:<assistant id>:<16 hex of SHA-256 of the note>`` (≤ 64 chars)."""
    digest = hashlib.sha256(note.encode("utf-8")).hexdigest()[:16]
    return f"{occasion}:{day.isoformat()}:{assistant_id}:{digest}"


# --------------------------------------------------------------------------- drafting


def _text(
    settings: Settings, *, locale: str, occasion: str, note: str, values: dict
) -> tuple[str, Violation | None]:
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


async def _wechat(session: AsyncSession, member_id: int) -> policy.WeChatIdentityInfo | None:
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


async def _phone_bad(session: AsyncSession, member: Member) -> bool:
    stmt = select(Identity.id).where(
        Identity.channel == "sms",
        Identity.address == member.phone,
        Identity.bad == True,  # noqa: E712
    )
    return (await session.exec(stmt)).first() is not None


async def _counted(session: AsyncSession, *, member_id: int, day: date, tz) -> int:
    """The member's messages the weekly cap counts for a personal greeting on `day`: every
    kind not suppressed in the 7 brand days ending on `day` (the planner's window)."""
    stmt = select(func.count()).where(
        OutboxMessage.member_id == member_id,
        OutboxMessage.status != SUPPRESSED,
        col(OutboxMessage.send_after) >= day_start(day - timedelta(days=6), tz),
        col(OutboxMessage.send_after) < day_end(day, tz),
    )
    return (await session.exec(stmt)).one()


async def _load(
    session: AsyncSession, *, assistant_id: int, member_id: int
) -> tuple[Assistant, Member]:
    assistant = await session.get(Assistant, assistant_id)
    if assistant is None:
        raise NotFound("no such assistant", "assistant")
    if not assistant.active:
        raise InvalidInput(f"assistant {assistant.code!r} is not active", "assistant")
    member = await session.get(Member, member_id)
    if member is None:
        raise NotFound("no such member", "member")
    if await owner_id(session, member=member) != assistant.id:
        raise NotOwner()
    return assistant, member


async def _prepare(
    session: AsyncSession,
    *,
    settings: Settings,
    assistant_id: int,
    member_id: int,
    occasion: str,
    note: str,
    now: datetime,
) -> _Prepared:
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    assistant, member = await _load(session, assistant_id=assistant_id, member_id=member_id)
    occasion = check_occasion(occasion)
    note = clean_note(note)
    tz = settings.brand.tz
    msg = settings.messaging
    locale = member.locale if member.locale in LOCALES else settings.brand.locale
    store = await session.get(Store, assistant.store_id)
    values = {
        "member_name": member.name,
        "store_name": store.name if store is not None else settings.brand.name,
        "assistant_name": assistant.name,
    }
    text, violation = _text(settings, locale=locale, occasion=occasion, note=note, values=values)
    field = "occasion"
    if violation is not None and note:
        _plain, without_note = _text(
            settings, locale=locale, occasion=occasion, note="", values=values
        )
        field = "note" if without_note is None else "occasion"

    send_after = policy.next_allowed(
        now, tz=tz, send_window=msg.send_window, preferred_contact=member.preferred_contact
    )
    planned_on = local_date(send_after, tz)
    refusal = occasion_refusal(occasion, member=member, day=planned_on, settings=settings)
    if refusal is not None and violation is None:  # a broken rule is named first
        raise GreetingRefused(NOT_NEAR_OCCASION, "occasion", refusal)
    reason: str | None = None
    choice: policy.ChannelChoice | None = None
    if member.stopped:
        reason = policy.STOPPED
    else:
        wechat = await _wechat(session, member.id) if settings.wechat.enabled else None
        routed = policy.choose_channel(
            kind=KIND,
            member_stopped=False,
            wechat=wechat,
            phone=member.phone,
            phone_bad=await _phone_bad(session, member),
            at=send_after,
            template_ids=dict(settings.wechat.templates),
            sms_provider=settings.sms.provider,
        )
        if isinstance(routed, policy.Suppressed):
            reason = routed.reason
        elif await _counted(session, member_id=member.id, day=planned_on, tz=tz) >= msg.weekly_cap:
            reason = policy.CAPPED
        else:
            choice = routed
    draft = GreetingDraft(
        text=text,
        channel=choice.channel if choice else "",
        send_after=send_after if choice else None,
        violation=violation,
        suppressed_reason=reason,
    )
    return _Prepared(
        draft=draft,
        field=field,
        member=member,
        assistant=assistant,
        locale=locale,
        via=choice.via if choice else "",
        address=choice.address if choice else "",
        send_after=send_after,
        planned_on=planned_on,
        key=greeting_key(occasion=occasion, day=planned_on, assistant_id=assistant.id, note=note),
    )


async def draft_greeting(
    session: AsyncSession,
    *,
    settings: Settings,
    assistant_id: int,
    member_id: int,
    occasion: str,
    note: str,
    now: datetime,
) -> GreetingDraft:
    """What `queue_greeting` would queue now, without writing anything (the live preview).

    A broken message rule is returned as `violation`, not raised; an unknown
    occasion or an unusable note raises `GreetingRefused`, another assistant's member
    `NotOwner`, an unknown member or assistant `NotFound`. The rate limit is not
    looked at (see `queue_greeting`).
    """
    prepared = await _prepare(
        session, settings=settings, assistant_id=assistant_id, member_id=member_id,
        occasion=occasion, note=note, now=now,
    )  # fmt: skip
    return prepared.draft


async def _existing(session: AsyncSession, *, member_id: int, key: str) -> OutboxMessage | None:
    stmt = select(OutboxMessage).where(
        OutboxMessage.member_id == member_id,
        OutboxMessage.kind == KIND,
        OutboxMessage.occasion == key,
    )
    return (await session.exec(stmt)).first()


async def _check_rate(
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


async def _lock_assistant(session: AsyncSession, assistant_id: int) -> None:
    """Serialise one assistant's greetings (the rate count); SQLite already serialises."""
    if is_postgres(session):
        stmt = select(Assistant.id).where(Assistant.id == assistant_id).with_for_update()
        await session.exec(stmt)


async def queue_greeting(
    session: AsyncSession,
    *,
    settings: Settings,
    assistant_id: int,
    member_id: int,
    occasion: str,
    note: str,
    now: datetime,
) -> tuple[OutboxMessage, bool]:
    """Put the greeting in the outbox (module steps 1-7). Returns (message, created):
    created False when the identical greeting was already there (returned unchanged).

    Raises `NotOwner` (403), `NotFound` (404), `GreetingRefused` (422: rule, field) and
    `RateLimited` (429) before writing anything. A stopped, unreachable or capped
    member's greeting is recorded ``suppressed`` with the reason. Never commits.
    """
    await _lock_assistant(session, assistant_id)
    p = await _prepare(
        session, settings=settings, assistant_id=assistant_id, member_id=member_id,
        occasion=occasion, note=note, now=now,
    )  # fmt: skip
    if p.draft.violation is not None:
        raise GreetingRefused(p.draft.violation.rule, p.field, p.draft.violation.detail)
    found = await _existing(session, member_id=p.member.id, key=p.key)
    if found is not None:
        return found, False
    await _check_rate(session, settings=settings, assistant_id=p.assistant.id, now=now)
    reason = p.draft.suppressed_reason
    message = await enqueue(
        session,
        member_id=p.member.id,
        kind=KIND,
        occasion=p.key,
        planned_on=p.planned_on,
        text=p.draft.text,
        channel=p.draft.channel,
        via=p.via,
        address=p.address,
        send_after=p.send_after,
        now=now,
        locale=p.locale,
        store_id=p.assistant.store_id,
        assistant_id=p.assistant.id,
        status=SUPPRESSED if reason else QUEUED,
        reason=reason,
    )
    if message is not None:
        return message, True
    found = await _existing(session, member_id=p.member.id, key=p.key)  # a concurrent twin
    if found is None:
        raise RuntimeError("outbox insert ignored but no row holds its key")
    return found, False
