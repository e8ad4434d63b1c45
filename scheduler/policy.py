"""When and how a proactive message may go: quiet hours, channel choice, weekly cap.

Pure functions of their arguments (no database, no clock), shared by the planner
(`scheduler.plan.planner`), the sender (re-checks at send time) and the staff greetings.

Quiet hours (MESSAGING.md "Timing"; DOMAIN.md §1 preferred contact time)
    A proactive message goes out only inside the brand's send window
    (``[messaging] send_window``, default ``09:00-21:00`` brand time) *and* inside
    the member's preferred contact window when one is recorded
    (``members.preferred_contact``, e.g. ``19:00-21:00``). Windows are
    ``HH:MM-HH:MM``; the end may be ``24:00``; a start after the end wraps midnight
    (``21:00-02:00`` = 21:00-24:00 and 00:00-02:00 of every day); equal start and
    end mean the whole day. When the two windows never overlap, the preferred
    window is ignored and the send window alone applies (the store's promise of
    quiet hours wins over a preference it cannot meet). A malformed preferred
    window is ignored the same way.

    `send_after(day)` is the first allowed moment *on the brand's calendar day*
    `day` (a greeting is never moved to another day); `next_allowed(now)` is `now`
    when allowed, else the next allowed moment (what the sender checks).

Channel choice (MESSAGING.md "Channels", "WeChat Official Account")
    `choose_channel`, in this order: a stopped member → suppressed ``stopped``;
    a WeChat customer-service message while the window opened by the member's last
    message is open at the send time (48 hours) and fewer than 5 messages were sent
    in it; a WeChat template message for service notices only, when a template id
    is configured for the kind (``[wechat.templates]``) and the member follows the
    account; an SMS when the member has a number not marked bad (via ``twilio``,
    or ``console`` when ``sms.provider = "console"``); otherwise suppressed
    ``no_channel``.

Weekly cap (MESSAGING.md "Timing", DOMAIN.md §7.7)
    At most ``weekly_cap`` proactive messages per member per rolling 7 days.
    `apply_cap` keeps greetings due on the day whatever the count (they still
    count), then service notices, then care messages, then an assistant's extra
    (personal) greetings, while slots remain; the rest are capped. The member's own
    service notices and the planner's care come before an assistant's extra word:
    the planner does not count personal greetings (`counts_for_planner`), and a
    personal greeting is capped when the week already holds ``weekly_cap`` messages
    of any kind (`scheduler.greetings`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Protocol, TypeVar

from models.kinds import CARE_KINDS, EXTRA_KINDS, GREETING_KINDS, SERVICE_KINDS

DAY_MINUTES = 24 * 60
CS_WINDOW = timedelta(hours=48)
"""WeChat customer-service messages: only within 48 hours of the member's last message."""
CS_MAX_MESSAGES = 5
"""… and at most 5 of them in that window."""

STOPPED = "stopped"
NO_CHANNEL = "no_channel"
CAPPED = "capped"

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Interval = tuple[int, int]
"""[start, end) in minutes since the day's midnight, 0 <= start < end <= 1440."""


# --------------------------------------------------------------------------- windows


@lru_cache(maxsize=1024)
def parse_window(value: str | None) -> tuple[Interval, ...] | None:
    """``"HH:MM-HH:MM"`` as the day's allowed intervals; None if empty or malformed.

    ``"09:00-21:00"`` → ((540, 1260),); ``"21:00-02:00"`` → ((0, 120), (1260, 1440));
    ``"08:00-08:00"`` → ((0, 1440),) (the whole day); the end may be ``24:00``.
    """
    if not value:
        return None
    m = _WINDOW.match(value)
    if not m:
        return None
    sh, sm, eh, em = (int(g) for g in m.groups())
    if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em):
        return None
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end % DAY_MINUTES:
        return ((0, DAY_MINUTES),)
    if start < end:
        return ((start, end),)
    return tuple(iv for iv in ((0, end), (start, DAY_MINUTES)) if iv[0] < iv[1])


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> tuple[Interval, ...]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if s < e:
                out.append((s, e))
    return tuple(sorted(out))


@lru_cache(maxsize=1024)
def allowed_intervals(send_window: str, preferred_contact: str | None) -> tuple[Interval, ...]:
    """The minutes of every day in which a proactive message may go (module rules)."""
    window = parse_window(send_window)
    if window is None:
        raise ValueError(f"bad send window {send_window!r} (expected HH:MM-HH:MM)")
    preferred = parse_window(preferred_contact)
    if preferred is None:
        return window
    both = _intersect(window, preferred)
    return both or window


def _at(day: date, minute: int, tz: tzinfo) -> datetime:
    """`minute` (0..1440) of the brand day `day`, wall-clock, as aware UTC."""
    local = datetime.combine(
        day + timedelta(days=minute // DAY_MINUTES),
        time(minute % DAY_MINUTES // 60, minute % 60),
        tzinfo=tz,
    )
    return local.astimezone(UTC)


def send_after(
    day: date, *, tz: tzinfo, send_window: str, preferred_contact: str | None
) -> datetime:
    """The first allowed moment on the brand day `day`, as an aware UTC datetime.

    Always on `day` (a window covers part of every day), so a message planned for
    a day is never moved to another day by the planner.
    """
    first = allowed_intervals(send_window, preferred_contact)[0][0]
    return _at(day, first, tz)


def is_allowed(
    now: datetime, *, tz: tzinfo, send_window: str, preferred_contact: str | None
) -> bool:
    """True when `now` lies inside the allowed intervals (module rules)."""
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    return any(s <= minute < e for s, e in allowed_intervals(send_window, preferred_contact))


def next_allowed(
    now: datetime, *, tz: tzinfo, send_window: str, preferred_contact: str | None
) -> datetime:
    """`now` if a message may go now, else the next allowed moment (aware UTC).

    The sender's check: a queued message whose `send_after` has come but which
    meets a closed window waits for this moment.
    """
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    intervals = allowed_intervals(send_window, preferred_contact)
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    if any(s <= minute < e for s, e in intervals):
        return now
    today = local.date()
    for s, _e in intervals:
        if s > minute:
            return _at(today, s, tz)
    return _at(today + timedelta(days=1), intervals[0][0], tz)


# --------------------------------------------------------------------------- channels


@dataclass(frozen=True, slots=True)
class WeChatIdentityInfo:
    """What the channel choice needs to know of the member's WeChat identity."""

    openid: str
    active: bool = True
    """Still following the official account (an unsubscribe makes it inactive)."""
    last_inbound_at: datetime | None = None
    """The member's last message to the account: it opens the 48-hour window."""
    cs_sent_since_inbound: int = 0
    """Customer-service messages already sent (or queued) since that message."""


@dataclass(frozen=True, slots=True)
class ChannelChoice:
    channel: str
    """wechat | sms (a console SMS keeps channel "sms")"""
    via: str
    """customer_service | template | twilio | console"""
    address: str
    """The openid or the E.164 phone number."""


@dataclass(frozen=True, slots=True)
class Suppressed:
    reason: str


def cs_window_open(wechat: WeChatIdentityInfo | None, at: datetime) -> bool:
    """The 48-hour / 5-message customer-service window is open at `at`."""
    return (
        wechat is not None
        and wechat.active
        and wechat.last_inbound_at is not None
        and wechat.last_inbound_at <= at < wechat.last_inbound_at + CS_WINDOW
        and wechat.cs_sent_since_inbound < CS_MAX_MESSAGES
    )


def choose_channel(
    *,
    kind: str,
    member_stopped: bool,
    wechat: WeChatIdentityInfo | None,
    phone: str | None,
    phone_bad: bool,
    at: datetime,
    template_ids: dict[str, str] | None = None,
    sms_provider: str = "twilio",
) -> ChannelChoice | Suppressed:
    """The one channel a proactive message of `kind` takes when sent at `at` (module rules).

    `wechat` is None when the member has no WeChat identity or WeChat is disabled;
    `sms_provider` is ``settings.sms.provider`` ("twilio" or "console").
    """
    if member_stopped:
        return Suppressed(STOPPED)
    if cs_window_open(wechat, at):
        return ChannelChoice("wechat", "customer_service", wechat.openid)
    if (
        kind in SERVICE_KINDS
        and wechat is not None
        and wechat.active
        and (template_ids or {}).get(kind)
    ):
        return ChannelChoice("wechat", "template", wechat.openid)
    if phone and not phone_bad:
        return ChannelChoice("sms", "console" if sms_provider == "console" else "twilio", phone)
    return Suppressed(NO_CHANNEL)


# --------------------------------------------------------------------------- weekly cap


class _HasKind(Protocol):
    kind: str


T = TypeVar("T", bound=_HasKind)


def cap_priority(kind: str) -> int:
    """0 greetings due on the day, 1 service notices, 2 care, 3 an assistant's extra
    greetings (the order slots are given in)."""
    if kind in EXTRA_KINDS:
        return 3
    if kind in GREETING_KINDS:
        return 0
    if kind in SERVICE_KINDS:
        return 1
    if kind in CARE_KINDS:
        return 2
    raise ValueError(f"unknown message kind {kind!r}")


def counts_for_planner(kind: str) -> bool:
    """Whether a message already in the week takes one of the planner's slots: every kind
    but an assistant's extra greeting (module "Weekly cap")."""
    return kind not in EXTRA_KINDS


def apply_cap(candidates: Sequence[T], already_counted: int, cap: int) -> tuple[list[T], list[T]]:
    """Split one member's sendable messages of a day into (kept, capped).

    `already_counted`: the member's messages already queued or sent in the rolling
    7 days (suppressed ones do not count). Greetings due on the day itself are
    always kept and count; then service notices, then care, then an assistant's
    extra greetings, in the given order within a class, while
    ``already_counted + kept < cap``.
    """
    ordered = sorted(candidates, key=lambda c: cap_priority(c.kind))  # stable
    kept: list[T] = []
    capped: list[T] = []
    used = already_counted
    for c in ordered:
        if (c.kind in GREETING_KINDS and c.kind not in EXTRA_KINDS) or used < cap:
            kept.append(c)
            used += 1
        else:
            capped.append(c)
    return kept, capped
