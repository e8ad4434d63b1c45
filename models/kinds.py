"""Proactive message kinds and the class each belongs to (MESSAGING.md "Message classes").

Every message the bot sends on its own initiative has a *kind* (CONTRACT.md
lists them; they appear in `plan --json` and `outbox --json`). Each kind belongs
to one class, and the class decides what the text may say:

- service notice (``points_notice``, ``card_pickup``, ``card_pickup_again``,
  ``card_mailed``, ``points_expiry``, ``voucher_expiry``, ``voucher_issued``): no
  promotion; stop hint.
- care (``care_d3``, ``care_d7``, ``care_d10``, ``care_d30``, ``care_d120``): no
  promotion — care tips only (day 3 and 7 carry them), and ``care_d30`` alone
  may lightly mention new arrivals; signature and stop hint.
- greeting (``birthday``, ``wedding_anniversary``, ``join_anniversary``,
  ``holiday``, ``seasonal``, ``dormant``, ``personal_greeting``): never any
  promotion; signature and stop hint.

(DOMAIN.md §6 care calendar, §7.1-7.6; MESSAGING.md.) Answers to a member's own
message are *replies*, not kinds: they are not checked here.

The stop hint of each locale is defined here once; templates receive it as the
``stop_hint`` variable (`scheduler.render`), so the checked text and the
rendered text cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

LOCALES = ("zh_CN", "en")

STOP_HINTS: dict[str, str] = {
    "zh_CN": "回复TD退订",
    "en": "Reply STOP to opt out",
}
"""How to stop proactive messages, per locale (MESSAGING.md "Stop hint", DOMAIN.md §7.6)."""


class MessageClass(StrEnum):
    SERVICE = "service"
    CARE = "care"
    GREETING = "greeting"


@dataclass(frozen=True)
class KindSpec:
    """What a kind's text must and must not contain."""

    name: str
    message_class: MessageClass
    new_arrivals_allowed: bool = False
    """Only care_d30: "may lightly mention new arrivals" (DOMAIN.md §6)."""
    care_tips: bool = False
    """care_d3 and care_d7 carry washing and care tips for the item bought (DOMAIN.md §6)."""

    @property
    def needs_signature(self) -> bool:
        """Greetings and care end with the store's and the assistant's name (DOMAIN.md §7.2)."""
        return self.message_class in (MessageClass.CARE, MessageClass.GREETING)

    @property
    def needs_stop_hint(self) -> bool:
        """Every proactive message tells how to stop (DOMAIN.md §7.6)."""
        return True

    @property
    def promotion_allowed(self) -> bool:
        """No class may promote: no sale, discount, price, coupon, points offer or event."""
        return False

    @property
    def is_greeting(self) -> bool:
        return self.message_class is MessageClass.GREETING


_SPECS = (
    KindSpec("points_notice", MessageClass.SERVICE),
    KindSpec("card_pickup", MessageClass.SERVICE),
    KindSpec("card_pickup_again", MessageClass.SERVICE),
    KindSpec("card_mailed", MessageClass.SERVICE),
    KindSpec("points_expiry", MessageClass.SERVICE),
    KindSpec("voucher_expiry", MessageClass.SERVICE),
    KindSpec("voucher_issued", MessageClass.SERVICE),
    KindSpec("care_d3", MessageClass.CARE, care_tips=True),
    KindSpec("care_d7", MessageClass.CARE, care_tips=True),
    KindSpec("care_d10", MessageClass.CARE),
    KindSpec("care_d30", MessageClass.CARE, new_arrivals_allowed=True),
    KindSpec("care_d120", MessageClass.CARE),
    KindSpec("birthday", MessageClass.GREETING),
    KindSpec("wedding_anniversary", MessageClass.GREETING),
    KindSpec("join_anniversary", MessageClass.GREETING),
    KindSpec("holiday", MessageClass.GREETING),
    KindSpec("seasonal", MessageClass.GREETING),
    KindSpec("dormant", MessageClass.GREETING),
    KindSpec("personal_greeting", MessageClass.GREETING),
)

KINDS: dict[str, KindSpec] = {s.name: s for s in _SPECS}
"""Every proactive kind, in CONTRACT.md order of classes."""

SERVICE_KINDS = frozenset(k for k, s in KINDS.items() if s.message_class is MessageClass.SERVICE)
CARE_KINDS = frozenset(k for k, s in KINDS.items() if s.message_class is MessageClass.CARE)
GREETING_KINDS = frozenset(k for k, s in KINDS.items() if s.message_class is MessageClass.GREETING)
"""The greeting kinds of CONTRACT.md: the no-promotion rule applies in full."""
EXTRA_KINDS = frozenset({"personal_greeting"})
"""An assistant's extra word, due on no day: under the weekly cap it yields to everything
the planner sends (service notices, care, greetings of the day) — the planner does not
count it, and it is dropped when the week is full (`scheduler.policy.apply_cap`)."""
GREETING_OCCASIONS = (*(k for k in KINDS if k in GREETING_KINDS), "other")
"""What an assistant's ``personal_greeting`` may be for (CONTRACT.md `POST /api/greetings`):
a greeting kind or ``other``; it picks the wording and the rules (`scheduler.greetings`)."""


def kind_spec(kind: str) -> KindSpec:
    """The spec of `kind`; ValueError names an unknown kind."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown message kind {kind!r}") from None


def stop_hint(locale: str) -> str:
    """The stop hint in `locale`; ValueError for an unsupported locale."""
    try:
        return STOP_HINTS[locale]
    except KeyError:
        raise ValueError(f"unsupported locale {locale!r} (expected one of {LOCALES})") from None
