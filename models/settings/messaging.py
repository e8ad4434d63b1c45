"""The settings sections the scheduler plans and sends by: scheduler, outbox, messaging
(care days, lexicon), greetings."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from models.settings.lexicon import Lexicon
from models.settings.sections import Section

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):([0-5]\d)|24:00)$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class SchedulerSettings(Section):
    enabled: bool = True
    plan_at: str = "08:00"

    @field_validator("plan_at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError("expected HH:MM")
        return v


class OutboxSettings(Section):
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 5
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    retry_backoff: Annotated[float, Field(gt=0, le=300)] = 1
    rate_sms: Annotated[float, Field(ge=0, le=10_000)] = 10
    """SMS sent per second at most, all senders together (0 = no limit); Twilio queues
    beyond a number's rate."""
    rate_wechat: Annotated[float, Field(ge=0, le=10_000)] = 20
    """WeChat API sends per second at most (0 = no limit)."""
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Messages one sender claims per channel per pass."""
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 16
    """Provider calls under way at once, per channel (a hanging provider holds up only
    its own channel)."""
    claim_timeout: Annotated[float, Field(ge=30, le=86_400)] = 300
    """Seconds after which a `sending` claim counts as dead (its process died mid-send) and
    another sender takes the message over (models.outbox.claims)."""


class CareDays(Section):
    """``[messaging.care_days]``: day N after a sale (the sale's day is day 1) on which
    each purchase follow-up is due (DOMAIN.md §6 care calendar); 0 = not sent.
    ``care_d7`` goes to VIP tiers (above the entry tier), ``care_d10`` to the entry tier."""

    points_notice: Annotated[int, Field(ge=0, le=3660)] = 2
    care_d3: Annotated[int, Field(ge=0, le=3660)] = 3
    care_d7: Annotated[int, Field(ge=0, le=3660)] = 7
    care_d10: Annotated[int, Field(ge=0, le=3660)] = 10
    care_d30: Annotated[int, Field(ge=0, le=3660)] = 30
    care_d120: Annotated[int, Field(ge=0, le=3660)] = 120

    @field_validator("*")
    @classmethod
    def _not_sale_day(cls, v: int) -> int:
        if v == 1:
            raise ValueError("0 (not sent) or a day from 2 on (day 1 is the sale's own day)")
        return v


class MessagingSettings(Section):
    send_window: str = "09:00-21:00"
    weekly_cap: Annotated[int, Field(ge=0, le=100)] = 2
    care_days: CareDays = Field(default_factory=CareDays)
    """The purchase follow-up calendar (scheduler.plan.planner; DOMAIN.md §6)."""
    quarterly_after: Annotated[int, Field(ge=1, le=100)] = 3
    """Care follow-ups queued since the member's last purchase after which care falls
    back to one message per quarter (DOMAIN.md §6 frequency control)."""
    dormant_months: Annotated[int, Field(ge=2, le=120)] = 10
    """A member whose last purchase is more than this many calendar months old gets
    one `dormant` greeting (DOMAIN.md §6)."""
    points_expiry_notice_days: Annotated[int, Field(ge=0, le=365)] = 7
    """`points_expiry` goes this many days before the last day points can be spent."""
    voucher_expiry_notice_days: Annotated[int, Field(ge=0, le=365)] = 7
    """`voucher_expiry` goes this many days before an unused voucher's last day."""
    lexicon: Lexicon = Field(default_factory=Lexicon)
    """Words the message rules reject (models.settings.lexicon; MESSAGING.md "Message classes")."""

    @field_validator("send_window")
    @classmethod
    def _window(cls, v: str) -> str:
        if not _WINDOW.match(v):
            raise ValueError("expected HH:MM-HH:MM (end may be 24:00)")
        return v


class GreetingSettings(Section):
    """``[greetings]``: assistants' personal greetings (`scheduler.greetings`)."""

    per_assistant_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 30
    """New greetings one assistant may queue in any hour (counted from the outbox, so the
    limit holds across replicas); more are refused with 429."""
    occasion_window_days: Annotated[int, Field(ge=0, le=60)] = 3
    """A greeting for a date-tied occasion (birthday, anniversaries, festival, season start)
    is accepted only this many days before or after it (`scheduler.occasion_window`): a
    day or two late over a weekend still reads naturally, a week off does not."""
