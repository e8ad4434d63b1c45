"""The Aliyun SMS pushes: `POST /sms/aliyun/up?token=T` (members' messages, 上行短信) and
`POST /sms/aliyun/report?token=T` (delivery reports, 回执). docs/aliyun-sms.md.

Aliyun's HTTP batch push signs nothing, so the URL carries a secret: `token` must equal
`sms.aliyun.push_token` (constant-time compare; an empty setting refuses everything) →
else 403 before the body is read. Both take the provider's JSON array and answer
`{"code": 0, "msg": "接收成功"}`; a body that is not such an array → 400 with a reason.

- Up messages (`phone_number`, `content`, `sign_name`, `send_time`, `dest_code`,
  `sequence_id`) go through the same conversation as Twilio's SMS (`Inbound(channel=
  "sms")`): the same understanding, handlers and stop words (退订 / TD / T …; and "R",
  the word Aliyun's promotional templates tell members to reply, means stop here). A
  re-pushed message (same `sequence_id`) has one effect: the inbound log keys it
  `aliyun:<sequence_id>` (`bot.channels.respond.answer`, the helper of both webhooks).
  Aliyun cannot carry an answer in the push's response, so every answer goes back by
  SendSms with its reply's template (`scheduler.send.aliyun_sms.AliyunSmsSender`), sent
  once, after the push was acknowledged.
- Reports (`biz_id`, `success`, `err_code`, …) move the message sent as that `BizId`
  like Twilio's status callback (`models.outbox.receipts`): delivered, or failed with
  the code — blacklist codes stop the member, invalid-number codes mark it bad.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

from aiohttp import web

from bot.appkeys import SESSIONS, SETTINGS, SMS_SENDER
from bot.channels import respond
from bot.conversation import Inbound
from bot.errors import json_error, json_response
from bot.inbound_outcome import bounded_key
from models.db import transaction
from models.errors import InvalidInput
from models.outbox.receipts import apply_receipt, record_receipt
from models.phone import mask_phone, normalise_phone
from models.strict import find_bad_text
from models.types import utcnow

log = logging.getLogger("memberbot.sms")

OK = {"code": 0, "msg": "接收成功"}
MAX_ITEMS = 100
"""Messages or reports in one push (Aliyun batches; more is not a push of theirs)."""
MAX_CONTENT = 1000
REFUSAL_WORD = "R"
"""Aliyun's promotional templates end with "拒收请回复R": on this channel "R" is a stop."""
STOP_WORD = "TD"
HANDLING_DEADLINE = 15.0
"""Seconds the claim of a message is held for its handler before a copy may take it over."""


class _Bad(Exception):
    def __init__(self, error: str, field: str | None = None):
        super().__init__(error)
        self.error, self.field = error, field


def _authorised(request: web.Request) -> bool:
    expected = request.app[SETTINGS].sms.aliyun.push_token
    given = request.query.get("token", "")
    ok = hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))
    return bool(expected) and ok


async def _items(request: web.Request) -> list[dict]:
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _Bad("malformed JSON") from None
    if not isinstance(data, list):
        raise _Bad("the body must be a JSON array")
    if len(data) > MAX_ITEMS:
        raise _Bad(f"at most {MAX_ITEMS} items per push")
    if not all(isinstance(item, dict) for item in data):
        raise _Bad("every item must be an object")
    bad = find_bad_text(data)
    if bad is not None:
        raise _Bad("control characters and unpaired surrogates are not allowed", bad)
    return data


def _text(item: dict, field: str, *, limit: int, required: bool = True) -> str:
    value = item.get(field)
    if isinstance(value, bool) or value is None:
        if required:
            raise _Bad(f"{field} is required", field)
        return ""
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or len(value) > limit:
        raise _Bad(f"{field} must be a string of at most {limit} characters", field)
    if required and not value.strip():
        raise _Bad(f"{field} is required", field)
    return value.strip()


def _guarded(handler):
    async def wrapped(request: web.Request) -> web.Response:
        if not _authorised(request):
            return json_error(403, "wrong or missing token", "token")
        try:
            items = await _items(request)
            return await handler(request, items)
        except _Bad as exc:
            return json_error(400, exc.error, exc.field)

    return wrapped


async def receive_up(request: web.Request, items: list[dict]) -> web.Response:
    app = request.app
    parsed = []
    for item in items:  # check the whole push before anything has an effect
        phone = _text(item, "phone_number", limit=20)
        content = _text(item, "content", limit=MAX_CONTENT, required=False)
        sequence = _text(item, "sequence_id", limit=64)
        try:
            sender = normalise_phone(phone)
        except InvalidInput:
            raise _Bad("phone_number is not a phone number", "phone_number") from None
        parsed.append((sender, content, sequence))
    sms_sender = app[SMS_SENDER]
    deadline = asyncio.get_running_loop().time() + HANDLING_DEADLINE  # the claim's lease
    for sender, content, sequence in parsed:
        text = STOP_WORD if content.upper() == REFUSAL_WORD else content
        key = f"aliyun:{sequence}"
        inbound = Inbound(channel="sms", sender=sender, text=text, at=utcnow(), message_id=key)

        async def deliver(answer: str, to: str = sender) -> None:
            await sms_sender.send(to, answer)

        # answered=True: the push's answer carries no text, every answer goes by SendSms
        await respond.answer(
            app, inbound, bounded_key(key), deadline=deadline, deliver=deliver, answered=True
        )
        log.info("aliyun up message %s from %s", sequence, mask_phone(sender))
    return json_response(OK)


async def receive_report(request: web.Request, items: list[dict]) -> web.Response:
    reports = []
    for item in items:
        biz_id = _text(item, "biz_id", limit=64)
        success = item.get("success")
        if not isinstance(success, bool):
            raise _Bad("success must be true or false", "success")
        code = _text(item, "err_code", limit=32, required=False) or None
        reports.append((biz_id, "delivered" if success else "failed", None if success else code))
    now = utcnow()
    async with transaction(request.app[SESSIONS]) as session:
        for biz_id, status, code in reports:
            if await record_receipt(
                session, provider_id=biz_id, status=status, error_code=code, at=now
            ):
                await apply_receipt(session, provider_id=biz_id, now=now)
    return json_response(OK)


def setup(app: web.Application) -> None:
    """Add the Aliyun pushes. Needs `app[SETTINGS]`, and at startup `app[SESSIONS]`,
    `app[INBOUND_LOG]`, `app[SMS_SENDER]` and `app[CONVERSATION]` (`bot.channels.respond`)."""
    app.router.add_post("/sms/aliyun/up", _guarded(receive_up))
    app.router.add_post("/sms/aliyun/report", _guarded(receive_report))
