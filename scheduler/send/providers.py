"""What the outbox sender asks of the SMS and WeChat provider clients, as plain data.

The clients themselves talk HTTP and live at the edge (`bot.sms_sender`: Twilio through
its aiohttp client; `bot.wechat_api`: the Official Account API over an aiohttp session);
the app builds them and hands them to `scheduler.send.transports`. Here are only the
protocols they implement, the errors they raise and the error codes the transports sort
refusals by — so the scheduler needs no HTTP library.

- SMS: `SmsSender.send(to, body, status_callback=…) -> SentSms`, refused with
  `SmsSendError`, whose `kind` tells the caller what to do (MESSAGING.md "SMS (Twilio)"):
  `retry` (429, 5xx, network — back off and try again), `stopped` (the member replied
  STOP to the carrier — record a stop), `bad_number` (mark the number, never retry) or
  `rejected` (any other refusal; do not retry); `retry_after` is the wait the provider
  asked for. `ConsoleSmsSender` is the embedded default (nothing leaves the machine).
- WeChat: `WeChatSender.send_text` (customer-service) and `send_template`, refused with
  `WeChatApiError`: `retryable` for HTTP 429/5xx, network, errcode -1 "system busy" and
  45009 daily quota; `OUT_OF_WINDOW` and `NOT_FOLLOWING` are final.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from typing import Literal, Protocol, TextIO

from models.phone import mask_phone

# ------------------------------------------------------------------------------ SMS

SendErrorKind = Literal["retry", "stopped", "bad_number", "rejected"]


@dataclass(frozen=True, slots=True)
class SentSms:
    provider_id: str
    """The provider's message id (Twilio `SM…`), the key of later status callbacks."""
    status: str
    """The provider's state right after the send call (Twilio: `queued`, `accepted`, …)."""


class SmsSendError(Exception):
    def __init__(
        self,
        message: str,
        *,
        kind: SendErrorKind,
        code: int | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.kind: SendErrorKind = kind
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after
        """Seconds the provider asked us to wait (`Retry-After`), when it said."""

    @property
    def retryable(self) -> bool:
        return self.kind == "retry"


class SmsSender(Protocol):
    async def send(self, to: str, body: str, *, status_callback: str | None = None) -> SentSms: ...


@dataclass(frozen=True, slots=True)
class ConsoleSms:
    to: str
    body: str
    status_callback: str | None
    provider_id: str


@dataclass
class ConsoleSmsSender:
    """Prints one line per message (the number masked) and remembers what it sent."""

    out: TextIO | None = None
    """Where to print; None = the current `sys.stdout`."""
    sent: list[ConsoleSms] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    async def send(self, to: str, body: str, *, status_callback: str | None = None) -> SentSms:
        provider_id = f"console-{next(self._ids)}"
        self.sent.append(ConsoleSms(to, body, status_callback, provider_id))
        out = self.out or sys.stdout
        print(f"[sms to {mask_phone(to)}] {body}", file=out, flush=True)
        return SentSms(provider_id=provider_id, status="sent")


# ---------------------------------------------------------------------------- WeChat

BUSY = -1
QUOTA_REACHED = 45009
OUT_OF_WINDOW = frozenset({45015, 45047})
"""The customer-service window is closed (48 hours since the member's last message) or
its 5 messages are used up: the message cannot go this way now."""
NOT_FOLLOWING = frozenset({43004})
"""The member no longer follows the Official Account."""


class WeChatApiError(Exception):
    def __init__(
        self,
        message: str,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.errcode = errcode
        self.http_status = http_status
        self.retry_after = retry_after
        """Seconds WeChat asked us to wait (`Retry-After`), when it said."""

    @property
    def retryable(self) -> bool:
        if self.errcode is not None:
            return self.errcode in (BUSY, QUOTA_REACHED)
        return self.http_status is None or self.http_status == 429 or self.http_status >= 500


class WeChatSender(Protocol):
    """The messages the outbox sends through the WeChat API (`bot.wechat_api.WeChatApi`)."""

    async def send_text(self, openid: str, content: str) -> None: ...

    async def send_template(
        self, openid: str, template_id: str, data: dict[str, str], *, url: str | None = None
    ) -> str: ...
