"""Channel senders behind one interface: `await transport.send(message) -> SendResult`.

A transport sends one outbox message and says how it went (MESSAGING.md "Channels"):

- returns `SendResult(provider_id, status)` when the provider took the message;
- raises `Retryable(reason)` when trying again later may work: HTTP 5xx or 429, a
  timeout, a connection error, WeChat "system busy" (-1) or daily quota (45009), and
  a refusal of our own configuration (HTTP 401/403, WeChat 40013 / 40125 / 40164:
  credentials or IP whitelist — not the message's fault, so it waits for the fix
  instead of being thrown away). `Retryable.outage` tells a provider that is down or
  throttling (no answer, timeout, 5xx, 429, WeChat -1 / 45009) from a refusal of ours;
  `retry_after` is the wait the provider asked for (`Retry-After`), when it did;
- raises `Permanent(reason, code, kind)` when it never will:
  `stopped` (Twilio 21610: the member replied STOP to the carrier),
  `bad_address` (Twilio 21211 / 21614: invalid or not a mobile number),
  `unreachable` (WeChat 45015 / 45047: the 48-hour / 5-message window is closed;
  43004: no longer a follower; no template configured for the kind) — the sender may
  re-route these to another channel, nothing was delivered —,
  `rejected` (any other refusal, e.g. another Twilio 4xx).

Implementations: `SmsTransport` (any `scheduler.send.providers.SmsSender`: Twilio's async
REST client `bot.sms_sender` with the status callback URL, or the console SMS sender),
the WeChat customer-service and template transports (any `scheduler.send.providers.
WeChatSender`: the app's `bot.wechat_api.WeChatApi`) and
`ConsoleTransport` (one masked line on stdout). `Transports.for_message` picks one.

What a template message carries: `{"touser": openid, "template_id": <wechat.templates
[kind]>, "data": {"content": {"value": <the rendered text>}}}` — the configured
template must show one field, `{{content.DATA}}`. The outbox keeps the rendered text
(checked by the message rules), so the template adds no words of its own.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from models.phone import mask_phone
from models.tables.outbox import OutboxMessage
from scheduler.send.providers import (
    NOT_FOLLOWING,
    OUT_OF_WINDOW,
    ConsoleSmsSender,
    SmsSender,
    SmsSendError,
    WeChatApiError,
    WeChatSender,
)

STOPPED, BAD_ADDRESS, UNREACHABLE, REJECTED = "stopped", "bad_address", "unreachable", "rejected"
STATUS_CALLBACK_PATH = "/sms/twilio/status"
WECHAT_CONFIG_ERRORS = frozenset({40013, 40125, 40164, 41002, 41004})
"""Invalid appid / secret, caller IP not whitelisted, missing appid / secret."""


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str | None
    """The provider's id of the message (Twilio `SM…`, WeChat template `msgid`)."""
    status: str
    """The provider's state right after the call (Twilio `queued`; others `sent`)."""


class Retryable(Exception):
    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        outage: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.outage = outage
        """The provider is down or throttling (not a refusal of this message or of our
        configuration): the sender's circuit breaker handles it (`scheduler.send.sender`)."""
        self.retry_after = retry_after
        """Seconds the provider asked us to wait before the next call, when it said."""


class Permanent(Exception):
    def __init__(self, reason: str, *, code: str | None = None, kind: str = REJECTED):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.kind = kind


class Transport(Protocol):
    channel: str
    """The channel whose rate limit applies: sms | wechat | console."""
    via: str
    """What `outbox.via` records: twilio | console | customer_service | template."""
    receipts: bool
    """The provider reports delivery later by `provider_id` (Twilio status callbacks)."""

    async def send(self, message: OutboxMessage) -> SendResult: ...


def mask_address(address: str) -> str:
    """A phone number masked like `mask_phone`; an openid cut to its first 6 characters."""
    if address.startswith("+") or address.isdigit():
        return mask_phone(address)
    return address[:6] + "…" if len(address) > 6 else address


# ------------------------------------------------------------------------------ SMS


class SmsTransport:
    """SMS through the configured `SmsSender` (Twilio, or the console in the embedded
    default). Twilio's refusals arrive as `SmsSendError.kind` (`bot.sms_sender.classify`)."""

    channel = "sms"

    def __init__(self, sender: SmsSender, *, status_callback: str | None = None):
        self._sender = sender
        self.console = isinstance(sender, ConsoleSmsSender)
        self.via = "console" if self.console else "twilio"
        self.receipts = not self.console
        self._status_callback = None if self.console else status_callback

    async def send(self, message: OutboxMessage) -> SendResult:
        try:
            sent = await self._sender.send(
                message.address, message.text, status_callback=self._status_callback
            )
        except SmsSendError as exc:
            raise _sms_error(exc) from exc
        return SendResult(provider_id=sent.provider_id, status=sent.status)


def _sms_error(exc: SmsSendError) -> Retryable | Permanent:
    code = None if exc.code is None else str(exc.code)
    what = f"twilio {code}" if code else f"twilio HTTP {exc.http_status}"
    if exc.kind == "retry":
        return Retryable(
            str(exc) if exc.http_status is None else what,
            code=code,
            outage=True,
            retry_after=getattr(exc, "retry_after", None),
        )
    if exc.http_status in (401, 403):
        return Retryable(f"{what}: credentials refused (check sms.twilio)", code=code)
    if exc.kind == "stopped":
        return Permanent(f"{what}: the member stopped SMS at the carrier", code=code, kind=STOPPED)
    if exc.kind == "bad_number":
        return Permanent(f"{what}: not a valid mobile number", code=code, kind=BAD_ADDRESS)
    return Permanent(f"{what}: refused", code=code, kind=REJECTED)


# ---------------------------------------------------------------------------- WeChat


def _wechat_error(exc: WeChatApiError) -> Retryable | Permanent:
    code = None if exc.errcode is None else str(exc.errcode)
    what = f"wechat {code}" if code else f"wechat: {exc}"
    if exc.retryable:
        return Retryable(what, code=code, outage=True, retry_after=exc.retry_after)
    if exc.http_status in (401, 403):
        return Retryable(what, code=code)
    if exc.errcode in WECHAT_CONFIG_ERRORS:
        return Retryable(f"{what}: check wechat.app_id / app_secret / IP whitelist", code=code)
    if exc.errcode in OUT_OF_WINDOW:
        return Permanent(f"{what}: customer-service window closed", code=code, kind=UNREACHABLE)
    if exc.errcode in NOT_FOLLOWING:
        return Permanent(f"{what}: not following the account", code=code, kind=UNREACHABLE)
    return Permanent(f"{what}: refused", code=code, kind=REJECTED)


class WeChatCustomerServiceTransport:
    """A customer-service text message (only inside the member's 48-hour / 5-message
    window; WeChat answers 45015 / 45047 otherwise)."""

    channel = "wechat"
    via = "customer_service"
    receipts = False

    def __init__(self, api: WeChatSender):
        self._api = api

    async def send(self, message: OutboxMessage) -> SendResult:
        try:
            await self._api.send_text(message.address, message.text)
        except WeChatApiError as exc:
            raise _wechat_error(exc) from exc
        return SendResult(provider_id=None, status="sent")


class WeChatTemplateTransport:
    """A template message for a service notice; `templates` maps kinds to template ids
    (`wechat.templates`). See the module docstring for the data sent."""

    channel = "wechat"
    via = "template"
    receipts = False

    def __init__(self, api: WeChatSender, templates: Mapping[str, str]):
        self._api = api
        self.templates = dict(templates)

    async def send(self, message: OutboxMessage) -> SendResult:
        template_id = self.templates.get(message.kind)
        if not template_id:
            raise Permanent(f"no wechat template for {message.kind}", kind=UNREACHABLE)
        try:
            msgid = await self._api.send_template(
                message.address, template_id, {"content": message.text}
            )
        except WeChatApiError as exc:
            raise _wechat_error(exc) from exc
        return SendResult(provider_id=msgid or None, status="sent")


# --------------------------------------------------------------------------- console


@dataclass
class ConsoleTransport:
    """The embedded default: one line per message on stdout (the address masked)."""

    out: TextIO | None = None
    """Where to print; None = the current `sys.stdout`."""
    sent: list[OutboxMessage] = field(default_factory=list)
    channel: str = "console"
    via: str = "console"
    receipts: bool = False

    async def send(self, message: OutboxMessage) -> SendResult:
        self.sent.append(message)
        print(
            f"[{message.kind} to {mask_address(message.address)}] {message.text}",
            file=self.out or sys.stdout,
            flush=True,
        )
        return SendResult(provider_id=f"console-{secrets.token_hex(8)}", status="sent")


# --------------------------------------------------------------------------- routing


@dataclass
class Transports:
    """The transports one sender has; `for_message` picks one by the message's channel
    (and, on WeChat, by `via`)."""

    sms: SmsTransport | Transport | None = None
    wechat_cs: Transport | None = None
    wechat_template: Transport | None = None
    console: Transport | None = None

    def channels(self) -> set[str]:
        """The channels this sender can send on (it claims only these)."""
        out = set()
        if self.sms is not None:
            out.add("sms")
        if self.wechat_cs is not None or self.wechat_template is not None:
            out.add("wechat")
        if self.console is not None:
            out.add("console")
        return out

    def for_message(self, message: OutboxMessage) -> Transport | None:
        if message.channel == "sms":
            return self.sms
        if message.channel == "wechat":
            return self.wechat_template if message.via == "template" else self.wechat_cs
        if message.channel == "console":
            return self.console
        return None

    @classmethod
    def build(
        cls,
        *,
        sms_sender: SmsSender,
        public_url: str,
        wechat_api: WeChatSender | None = None,
        templates: Mapping[str, str] | None = None,
        out: TextIO | None = None,
    ) -> Transports:
        """The transports of a running app: SMS through `sms_sender` (Twilio status
        callbacks to `public_url` + /sms/twilio/status), WeChat when an API client is
        given (WeChat enabled), and the console."""
        return cls(
            sms=SmsTransport(sms_sender, status_callback=public_url + STATUS_CALLBACK_PATH),
            wechat_cs=None if wechat_api is None else WeChatCustomerServiceTransport(wechat_api),
            wechat_template=(
                None if wechat_api is None else WeChatTemplateTransport(wechat_api, templates or {})
            ),
            console=ConsoleTransport(out=out),
        )
