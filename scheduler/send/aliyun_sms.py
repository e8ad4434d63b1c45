"""SMS through Aliyun (dysmsapi): every text an approved template (docs/aliyun-sms.md).

The client that talks HTTP (the official SDK) lives at the edge (`bot.aliyun_api`) and
is seen here only as `AliyunClient.send_template(phone, template_code, params) -> biz_id`,
refused with `AliyunError(code, http_status)`. This module decides what to send:

- `AliyunTemplates` maps a text to its approved template: the variant of its kind or
  reply whose shape it has (`scheduler.sms_shapes`), the code configured for it in
  `sms.aliyun.templates` (`Shape.key`: `.en` for English), and the variable values, checked
  against Aliyun's rules (non-empty, at most `variable_max_length` characters).
- `AliyunSmsSender` is an `SmsSender` (`scheduler.send.providers`): `send(to, body)` for
  replies and binding codes — the body is matched against every reply's shape.
- `AliyunSmsTransport` is the outbox transport (`via = "aliyun"`): the message's kind
  gives the shapes; a message whose template has no code never gets here
  (`missing_template` makes it `suppressed` at send time, `scheduler.send.send_checks`).

SendSms answers (Aliyun's API error codes) sort as the transports expect:
`isv.MOBILE_NUMBER_ILLEGAL` → bad number; `isv.BUSINESS_LIMIT_CONTROL` /
`isv.DAY_LIMIT_CONTROL` (per-number flow control) and HTTP 429 / 5xx / network → retry;
account, signature, template and key problems (`isv.SMS_SIGNATURE_ILLEGAL`,
`isv.SMS_TEMPLATE_ILLEGAL`, `isv.AMOUNT_NOT_ENOUGH`, `isv.OUT_OF_SERVICE`,
`InvalidAccessKeyId.NotFound`, HTTP 401 / 403 / 404 …) → retry, waiting for the
operator's fix, like Twilio's credential refusals; anything else → rejected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from models.phone import mask_phone
from models.settings.sections import AliyunSmsSettings
from models.tables.outbox import OutboxMessage
from scheduler.send.providers import SentSms, SmsSendError
from scheduler.send.transports import BAD_ADDRESS, REJECTED, Permanent, Retryable, SendResult
from scheduler.sms_shapes import Shape, find_reply, match

log = logging.getLogger("memberbot.sms")

BAD_NUMBER_CODES = frozenset({"isv.MOBILE_NUMBER_ILLEGAL"})
FLOW_CONTROL_CODES = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL"})
CONFIG_CODES = frozenset({
    "isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGN_ILLEGAL",
    "isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE", "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.PRODUCT_UNSUBSCRIBE", "isv.ACCOUNT_NOT_EXISTS", "isv.ACCOUNT_ABNORMAL",
    "isv.DENY_IP_RANGE", "isp.RAM_PERMISSION_DENY", "InvalidAccessKeyId.NotFound",
    "SignatureDoesNotMatch", "isv.TEMPLATE_MISSING_PARAMETERS",
})  # fmt: skip
"""Refusals of our configuration (account, keys, signature, template): they wait for
the operator's fix instead of throwing the message away."""


class AliyunError(Exception):
    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class AliyunClient(Protocol):
    async def send_template(self, phone: str, template_code: str, params: dict[str, str]) -> str:
        """Send one approved template; the provider's `BizId` (key of its reports)."""
        ...


class Unsendable(Exception):
    """No approved template can carry this text (the reason names what is missing)."""


def aliyun_phone(e164: str) -> str:
    """The number as SendSms takes it: 11 digits for the mainland, else country code + number."""
    digits = e164.lstrip("+")
    return digits[2:] if e164.startswith("+86") else digits


def classify(exc: AliyunError) -> Retryable | Permanent:
    """What a SendSms refusal means for the outbox (module docstring)."""
    code, http = exc.code, exc.http_status
    what = f"aliyun {code or f'HTTP {http}'}"
    if code in BAD_NUMBER_CODES:
        return Permanent(f"{what}: not a valid mobile number", code=code, kind=BAD_ADDRESS)
    if code in FLOW_CONTROL_CODES:
        return Retryable(f"{what}: the provider's per-number limit", code=code)
    if http is None or http == 429 or http >= 500 or code in ("isp.SYSTEM_ERROR", "Throttling"):
        return Retryable(what if http is not None else str(exc), code=code, outage=True)
    if code in CONFIG_CODES or http in (401, 403, 404):
        return Retryable(f"{what}: check sms.aliyun and the console", code=code)
    return Permanent(f"{what}: refused", code=code, kind=REJECTED)


@dataclass
class AliyunTemplates:
    settings: AliyunSmsSettings

    def code(self, s: Shape) -> str | None:
        return self.settings.templates.get(s.key) or None

    def missing_template(self, message: OutboxMessage) -> str | None:
        """Why `message` cannot go by SMS (no code for its template, or it fits none), or
        None when it can."""
        try:
            self.for_kind(message.kind, message.locale, message.text)
        except Unsendable as exc:
            return str(exc)
        return None

    def fill(self, s: Shape, values: dict[str, str]) -> tuple[str, dict[str, str]]:
        """(template code, variables) of a text split as `s`; Unsendable when it cannot go."""
        code = self.code(s)
        if not code:
            raise Unsendable(f"no aliyun template: sms.aliyun.templates.{s.key}")
        problem = s.check(values, max_length=self.settings.variable_max_length)
        if problem:
            raise Unsendable(f"aliyun template {s.key}: {problem}")
        return code, values

    def for_kind(self, kind: str, locale: str, text: str) -> tuple[str, dict[str, str]]:
        found = match(kind, locale, text)
        if found is None:
            raise Unsendable(f"text does not fit any aliyun template of {kind}")
        return self.fill(*found)

    def for_reply(self, text: str) -> tuple[str, dict[str, str]]:
        found = find_reply(text)
        if found is None:
            raise Unsendable("no reply template has this text's shape")
        return self.fill(*found)


class AliyunSmsSender:
    """`SmsSender` for replies and binding codes, and the client of `AliyunSmsTransport`."""

    via = "aliyun"

    def __init__(self, client: AliyunClient, settings: AliyunSmsSettings):
        self.client = client
        self.templates = AliyunTemplates(settings)

    async def send(self, to: str, body: str, *, status_callback: str | None = None) -> SentSms:
        try:
            code, params = self.templates.for_reply(body)
        except Unsendable as exc:
            log.warning("sms reply to %s not sent: %s", mask_phone(to), exc)
            raise SmsSendError(str(exc), kind="rejected") from exc
        try:
            biz_id = await self.client.send_template(aliyun_phone(to), code, params)
        except AliyunError as exc:
            verdict = classify(exc)
            kind = "retry" if isinstance(verdict, Retryable) else (
                "bad_number" if verdict.kind == BAD_ADDRESS else "rejected")  # fmt: skip
            raise SmsSendError(verdict.reason, kind=kind, http_status=exc.http_status) from exc
        return SentSms(provider_id=biz_id, status="sent")

    def transport(self) -> AliyunSmsTransport:
        """The outbox transport over this sender (`scheduler.send.transports.Transports.build`)."""
        return AliyunSmsTransport(self)


class AliyunSmsTransport:
    """The outbox's SMS transport when `sms.provider = "aliyun"`."""

    channel = "sms"
    via = "aliyun"
    receipts = True

    def __init__(self, sender: AliyunSmsSender):
        self._sender = sender
        self.templates = sender.templates

    def missing_template(self, message: OutboxMessage) -> str | None:
        return self.templates.missing_template(message)

    async def send(self, message: OutboxMessage) -> SendResult:
        try:
            code, params = self.templates.for_kind(message.kind, message.locale, message.text)
        except Unsendable as exc:
            raise Permanent(str(exc), kind=REJECTED) from exc
        try:
            biz_id = await self._sender.client.send_template(
                aliyun_phone(message.address), code, params
            )
        except AliyunError as exc:
            raise classify(exc) from exc
        return SendResult(provider_id=biz_id, status="sent")
