"""An assistant's personal greeting (`POST /api/greetings`, `memberbot greet`, the staff
console): drafted, checked and queued under the same rules as the planner's messages.

    draft = await draft_greeting(session, settings=s, assistant_id=a, member_id=m,
                                 occasion="birthday", note="", now=now)   # preview, no writes
    message, created = await queue_greeting(session, settings=s, ...)    # the outbox row

What a greeting goes through, in this order (MESSAGING.md, DOMAIN.md §7-8):

1. The assistant must be active and own the member (`models.ownership.owner_id`): else
   `NotOwner` (403).
   An unknown member is `NotFound` (404).
2. The occasion must be one of `OCCASIONS` and the note at most `NOTE_MAX` characters
   (whitespace runs, newlines included, become one space): else `GreetingRefused`
   (these checks and the outbox reads of steps 4-7: `scheduler.greeting_checks`).
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

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import local_date
from models.errors import InvalidInput, NotFound
from models.kinds import LOCALES
from models.outbox.states import QUEUED, SUPPRESSED, enqueue
from models.ownership import NotOwner, owner_id
from models.settings import Settings
from models.tables.members import Assistant, Member, Store
from models.tables.outbox import OutboxMessage
from scheduler import policy
from scheduler.greeting_checks import (
    KIND,
    GreetingRefused,
    check_occasion,
    check_rate,
    checked_text,
    clean_note,
    counted_this_week,
    existing_greeting,
    greeting_key,
    lock_assistant,
    phone_bad,
    wechat_identity,
)
from scheduler.message_rules import Violation
from scheduler.occasion_window import NOT_NEAR_OCCASION, occasion_refusal

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


# --------------------------------------------------------------------------- drafting


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
    text, violation = checked_text(
        settings, locale=locale, occasion=occasion, note=note, values=values
    )
    field = "occasion"
    if violation is not None and note:
        _plain, without_note = checked_text(
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
        wechat = await wechat_identity(session, member.id) if settings.wechat.enabled else None
        routed = policy.choose_channel(
            kind=KIND,
            member_stopped=False,
            wechat=wechat,
            phone=member.phone,
            phone_bad=await phone_bad(session, member),
            at=send_after,
            template_ids=dict(settings.wechat.templates),
            sms_provider=settings.sms.provider,
        )
        if isinstance(routed, policy.Suppressed):
            reason = routed.reason
        elif (
            await counted_this_week(session, member_id=member.id, day=planned_on, tz=tz)
            >= msg.weekly_cap
        ):
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
    await lock_assistant(session, assistant_id)
    p = await _prepare(
        session, settings=settings, assistant_id=assistant_id, member_id=member_id,
        occasion=occasion, note=note, now=now,
    )  # fmt: skip
    if p.draft.violation is not None:
        raise GreetingRefused(p.draft.violation.rule, p.field, p.draft.violation.detail)
    found = await existing_greeting(session, member_id=p.member.id, key=p.key)
    if found is not None:
        return found, False
    await check_rate(session, settings=settings, assistant_id=p.assistant.id, now=now)
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
    found = await existing_greeting(session, member_id=p.member.id, key=p.key)  # a concurrent twin
    if found is None:
        raise RuntimeError("outbox insert ignored but no row holds its key")
    return found, False
