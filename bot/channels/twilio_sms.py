"""The Twilio SMS webhooks: `POST /sms/twilio` (messages) and `POST /sms/twilio/status`.

CONTRACT.md "HTTP" and MESSAGING.md "SMS (Twilio)":

- Every request carries `X-Twilio-Signature`, an HMAC of the URL Twilio called and the
  form fields, keyed with `sms.twilio.auth_token`; it is checked with twilio's
  `RequestValidator` against `server.public_url` + the request's path and query — the
  public URL, not the one a proxy forwards to. Wrong, missing, or no auth token
  configured → 403 (an empty key would let anyone sign).
- A message becomes `Inbound(channel="sms", sender=From as E.164 — raw if it does not
  parse —, text=Body, message_id=MessageSid)`; the reply is TwiML with zero or one
  `<Message>`. A duplicate delivery of one `MessageSid` has one effect and gets the same
  answer (`bot.inbound_log`). Twilio waits 15 s: an answer not ready within
  `SmsOptions.reply_deadline` is answered with an empty `<Response/>` and sent with the
  configured SMS sender when it is ready.
- A status callback (`MessageSid`, `MessageStatus`, `ErrorCode`) is recorded in
  `sms_receipts`, never moving a state backwards (`models.outbox.receipts`), and moves the
  outbox message sent as that sid forward (`models.outbox.receipts.apply_receipt`: delivered,
  or undeliverable with the error code) → 204. A callback that arrives before the send
  call has returned waits in `sms_receipts` until the sender records the sid.
- Stop words need nothing here: the conversation handles them like any text.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiDictProxy
from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.twiml.messaging_response import MessagingResponse

from bot.appkeys import CONVERSATION, SESSIONS, SETTINGS, SMS_SENDER
from bot.channels import respond, xmlsafe
from bot.conversation import Inbound
from bot.edge import posted_form
from bot.inbound_outcome import bounded_key
from models.db import transaction
from models.errors import InvalidInput
from models.outbox.receipts import apply_receipt, record_receipt
from models.phone import normalise_phone
from models.types import utcnow

log = logging.getLogger("memberbot.sms")


@dataclass
class SmsOptions:
    reply_deadline: float = 12.0
    """Seconds after which an unfinished answer is sent by the SMS API instead (Twilio waits 15)."""


SMS_OPTIONS = web.AppKey("sms_options", SmsOptions)
SID_MAX = 64
"""Longest `MessageSid` accepted (Twilio's are 34 characters): longer → 400."""


def _forbidden() -> web.Response:
    return web.Response(status=403, text="forbidden", content_type="text/plain")


def _twiml(text: str | None) -> web.Response:
    resp = MessagingResponse()
    if text:
        resp.message(xmlsafe.xml_chars(text))  # never invalid XML, whatever the answer holds
    return web.Response(text=str(resp), content_type="text/xml")


async def signed_form(request: web.Request) -> MultiDictProxy[str] | None:
    """The form fields if `X-Twilio-Signature` is right for them, else None."""
    settings = request.app[SETTINGS]
    token = settings.sms.twilio.auth_token
    form = posted_form(request)  # parsed strictly by bot.edge
    signature = request.headers.get("X-Twilio-Signature")
    if not token or not signature:
        return None
    if any(not isinstance(v, str) for v in form.values()):
        return None  # Twilio posts plain form fields, never files
    url = settings.server.public_url + request.raw_path
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not RequestValidator(token).validate(url, form, signature, algorithm):
        return None
    return form  # type: ignore[return-value]


async def receive(request: web.Request) -> web.Response:
    started = asyncio.get_running_loop().time()
    form = await signed_form(request)
    if form is None:
        return _forbidden()
    app = request.app
    raw_from = form.get("From", "").strip()
    try:
        sender = normalise_phone(raw_from)
    except InvalidInput:
        sender = raw_from  # still answer; the conversation finds no member for it
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip() or None
    if sid is not None and len(sid) > SID_MAX:
        return web.Response(status=400, text=f"MessageSid is at most {SID_MAX} characters")
    inbound = Inbound(
        channel="sms", sender=sender, text=form.get("Body", ""), at=utcnow(), message_id=sid
    )
    if sid is None:  # nothing to de-duplicate by (not Twilio's own requests)
        return _twiml((await app[CONVERSATION].handle(inbound)).text)

    async def deliver(text: str) -> None:  # an answer not ready by the deadline
        if not sender.startswith("+"):
            raise ValueError("the sender is not a phone number: cannot text the answer")
        await app[SMS_SENDER].send(sender, text)

    return await respond.respond(
        app,
        inbound,
        bounded_key(f"sid:{sid}"),
        deadline=started + app[SMS_OPTIONS].reply_deadline,
        render=_twiml,
        deliver=deliver,
    )


async def status_callback(request: web.Request) -> web.Response:
    form = await signed_form(request)
    if form is None:
        return _forbidden()
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip()
    if not sid or not status:
        return web.Response(status=400, text="MessageSid and MessageStatus are required")
    if len(sid) > SID_MAX:  # never cut: the first 64 characters may be another message's
        return web.Response(status=400, text=f"MessageSid is at most {SID_MAX} characters")
    error_code = (form.get("ErrorCode") or "").strip()[:10] or None
    now = utcnow()
    async with transaction(request.app[SESSIONS]) as session:
        changed = await record_receipt(
            session, provider_id=sid, status=status, error_code=error_code, at=now
        )
        if changed:  # the outbox message sent as this sid follows, forward only
            await apply_receipt(session, provider_id=sid, now=now)
    if not changed:
        log.info("status %s for %s ignored (stale or unknown)", status, sid)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Add the Twilio webhooks. Needs `app[SETTINGS]`, and at startup `app[SESSIONS]`,
    `app[INBOUND_LOG]`, `app[SMS_SENDER]` and `app[CONVERSATION]`."""
    if SMS_OPTIONS not in app:
        app[SMS_OPTIONS] = SmsOptions()
    app.router.add_post("/sms/twilio", receive)
    app.router.add_post("/sms/twilio/status", status_callback)
