"""The configured SMS sender: one `send(to, body)` for bind codes now and the outbox later.

`settings.sms.provider` picks it (CONTRACT.md): `console` (the embedded default —
prints a masked line, keeps what it sent in memory, nothing leaves the machine) or
`twilio` (the REST API through twilio's aiohttp client, `sms.twilio.api_base_url`
pointing at Twilio or a fake). `open_sms_sender(settings.sms)` is an async context
manager: the Twilio HTTP client must be created inside the running loop and closed
on shutdown (LIBRARIES.md), so the app opens it in a `cleanup_ctx`.

A refused send raises `SmsSendError` (`scheduler.send.providers`, with the `SmsSender`
protocol and the console sender: what the outbox needs of SMS), whose `kind` tells
the caller what to do (MESSAGING.md "SMS (Twilio)"): `retry` (429, 5xx, network —
back off and try again), `stopped` (21610: the member replied STOP to the carrier — record a stop),
`bad_number` (21211 / 21614 — mark the number, never retry) or `rejected` (any other
refusal; do not retry). A 429 / 503 that carried `Retry-After` says how long Twilio
asked us to wait (`SmsSendError.retry_after`): twilio's `TwilioRestException` has no
headers, so the HTTP client (`_RetryAfterClient`) notes the header of each answer in a
context variable of the calling task, read when the exception is turned into ours.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from bot.retry_after import parse_retry_after
from models.phone import mask_phone
from models.settings.sections import SmsSettings
from scheduler.send.providers import (
    ConsoleSmsSender,
    SendErrorKind,
    SentSms,
    SmsSender,
    SmsSendError,
)

log = logging.getLogger("memberbot.sms")

STOPPED_CODES = frozenset({21610})
BAD_NUMBER_CODES = frozenset({21211, 21614})


def classify(http_status: int | None, code: int | None) -> SendErrorKind:
    """What a provider refusal means for the caller (see the module docstring)."""
    if code in STOPPED_CODES:
        return "stopped"
    if code in BAD_NUMBER_CODES:
        return "bad_number"
    if http_status is None or http_status == 429 or http_status >= 500:
        return "retry"
    return "rejected"


class TwilioSmsSender:
    """Sends through Twilio's REST API with twilio's own async client."""

    def __init__(
        self,
        client,
        *,
        from_number: str = "",
        messaging_service_sid: str = "",
        timeout: float | None = None,
    ):
        if not (from_number or messaging_service_sid):
            raise ValueError("sms.twilio needs from_number or messaging_service_sid")
        self._client = client
        self._from = from_number
        self._service = messaging_service_sid
        self._timeout = timeout
        """Seconds for the whole API call (twilio's async client ignores its own timeout)."""

    async def send(self, to: str, body: str, *, status_callback: str | None = None) -> SentSms:
        from twilio.base import values
        from twilio.base.exceptions import TwilioRestException

        _RETRY_AFTER.set(None)
        try:
            async with asyncio.timeout(self._timeout):
                message = await self._client.messages.create_async(
                    to=to,
                    body=body,
                    from_=self._from or values.unset,
                    messaging_service_sid=self._service or values.unset,
                    status_callback=status_callback or values.unset,
                )
        except TwilioRestException as exc:
            kind = classify(exc.status, exc.code)
            raise SmsSendError(
                f"twilio refused the message: {exc.code or exc.status}",
                kind=kind,
                code=exc.code,
                http_status=exc.status,
                retry_after=_RETRY_AFTER.get(),
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SmsSendError(f"twilio unreachable: {type(exc).__name__}", kind="retry") from exc
        log.info("sms to %s accepted by twilio: %s", mask_phone(to), message.sid)
        return SentSms(provider_id=message.sid, status=message.status or "queued")


_RETRY_AFTER: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "twilio_retry_after", default=None
)
"""The `Retry-After` of the last Twilio answer in this task (seconds), if it had one."""


def _retry_after_client(timeout: float):
    """twilio's async HTTP client, noting each answer's `Retry-After` (module docstring)."""
    from twilio.http.async_http_client import AsyncTwilioHttpClient

    class _RetryAfterClient(AsyncTwilioHttpClient):
        async def request(self, *args, **kwargs):
            response = await super().request(*args, **kwargs)
            headers = response.headers or {}
            _RETRY_AFTER.set(parse_retry_after(headers.get("Retry-After")))
            return response

    return _RetryAfterClient(timeout=timeout)


@asynccontextmanager
async def open_sms_sender(
    settings: SmsSettings, *, request_timeout: float = 10.0
) -> AsyncIterator[SmsSender]:
    """The sender `settings.provider` names, open for the duration of the block."""
    if settings.provider == "console":
        yield ConsoleSmsSender()
        return
    from twilio.rest import Client

    tw = settings.twilio
    if not (tw.account_sid and tw.auth_token):
        raise ValueError("sms.provider = twilio needs sms.twilio.account_sid and auth_token")
    http_client = _retry_after_client(request_timeout)
    try:
        # environment={}: the configuration is the one source (no TWILIO_* variables).
        client = Client(tw.account_sid, tw.auth_token, http_client=http_client, environment={})
        client.api.base_url = tw.api_base_url.rstrip("/")
        yield TwilioSmsSender(
            client,
            from_number=tw.from_number,
            messaging_service_sid=tw.messaging_service_sid,
            timeout=request_timeout,
        )
    finally:
        await http_client.close()
        await asyncio.sleep(0)  # let aiohttp finish closing the connector's transports
