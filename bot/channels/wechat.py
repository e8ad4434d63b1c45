"""The WeChat Official Account webhook: `GET /wechat` (URL check) and `POST /wechat` (messages).

CONTRACT.md "HTTP" and MESSAGING.md "WeChat Official Account". wechatpy checks the
signatures, decrypts and encrypts (safe mode) and renders the passive reply; this
module only turns the wire into an `Inbound` and the `Reply` back into the wire.

- Order of checks, cheapest first and nothing parsed before the caller is known:
  `timestamp` (ASCII digits, within `wechat.max_timestamp_age` of our clock either
  way) → signature → body size → (plain) replay memory / (safe) `msg_signature` →
  XML. Each refusal is a 403 without details.
- Plain mode: `signature` = sha1(sorted token, timestamp, nonce). It does not cover
  the body, so a signed URL is accepted with one body only: the first one seen, kept
  in the database across replicas (`bot.channels.wechat_replay`); the same URL with
  the same body is a resend and gets the stored answer.
- Safe mode (`encrypt_type=aes`): `msg_signature` = sha1(sorted token, timestamp,
  nonce, Encrypt) covers the message. `wechat.encoding_aes_key` makes it the only
  mode: a request without `encrypt_type=aes` → 403 (compatible mode sends the
  encrypted message too and is read from it). A `signature` sent along must be right.
  `<Encrypt>` is found in the raw body by a pattern (base64 holds nothing XML treats
  specially; the last few candidates tried, see `_signed_encrypt`) and its signature
  checked before decryption; the envelope itself is never parsed — nothing else in it is used —
  and only the decrypted, authenticated message reaches the XML parser.
- Body: over `server.max_body_bytes` → 413; a DTD or entity declaration in the message
  → 400 before any parser runs (`xmlsafe`); malformed → 400; a `MsgType` or `Event`
  over 32 or a `MsgId` over 64 characters → 400.
- Text messages and the events subscribe (also by QR scene), unsubscribe and menu
  CLICK go to the conversation; other message types (image, voice, …) go as an empty
  text so the bot answers with help; other events (VIEW, LOCATION, job reports, …) are
  acknowledged with `success` and not passed on.
- Retries and the 5-second deadline: `bot.inbound_log` (key: `FromUserName` + `MsgId`,
  so one sender's `MsgId` never finds another's answer; events `FromUserName` +
  `CreateTime`, plus the event and its key; bounded to the column by
  `bounded_key`). An answer not ready
  within `reply_deadline` is replaced by `success` and sent through the
  customer-service API when it is ready. The deadline counts from when the request
  arrived as well as the adapter can tell (`bot.loop_lag`: the time it waited for the
  event loop) and bounds the whole request, database writes included.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import WeChatSigner, check_signature

from bot import eager
from bot.appkeys import CONVERSATION, ENGINE, HTTP, INBOUND_LOG, SETTINGS
from bot.channels import wechat_replay as replay
from bot.channels import xmlsafe
from bot.channels.wechat_replay import ReplayMemory
from bot.conversation import Inbound
from bot.inbound_log import HandlingFailed, bounded_key
from bot.loop_lag import LoopLag
from bot.wechat_api import WeChatApi
from models.settings.sections import WeChatSettings
from scheduler.send.providers import WeChatApiError

log = logging.getLogger("memberbot.wechat")

FORWARDED_EVENTS = frozenset({"subscribe", "unsubscribe", "click"})


@dataclass
class WeChatOptions:
    """Timing knobs of the adapter (tests shorten them; replace before the app starts)."""

    reply_deadline: float = 4.0
    """Seconds after which an unfinished answer is replaced by `success` (WeChat waits 5)."""
    cs_attempts: int = 3
    """Tries of a customer-service send that failed for a retryable reason."""
    cs_backoff: float = 0.5
    """Seconds before the second try; doubles each time."""


WECHAT_OPTIONS = web.AppKey("wechat_options", WeChatOptions)
WECHAT_API = web.AppKey("wechat_api", WeChatApi)
WECHAT_REPLAY = web.AppKey("wechat_replay", ReplayMemory)

MSG_TYPE_MAX = 32
"""Longest `MsgType` / `Event` accepted (WeChat's are a few letters): longer → 400."""
MSG_ID_MAX = 64
"""Longest `MsgId` accepted (WeChat's is a 64-bit number): longer → 400."""
_ENCRYPT = re.compile(
    rb"<Encrypt>\s*(?:<!\[CDATA\[([A-Za-z0-9+/=]+)\]\]>|([A-Za-z0-9+/=]+))\s*</Encrypt>"
)
"""The `<Encrypt>` field of a safe-mode envelope, found without an XML parser (base64
has no character that XML treats specially)."""
ENCRYPT_CANDIDATES = 4
"""`<Encrypt>`-looking fields of one body whose signature is tried at most (the last ones:
WeChat puts the real field last, after a compatible-mode envelope's plain copy)."""

LOOP_LAG = web.AppKey("loop_lag", LoopLag)


@dataclass(frozen=True, slots=True)
class WeChatMessage:
    """The fields of one inbound message or event that the bot uses."""

    openid: str
    account: str
    msg_type: str
    create_time: int
    msg_id: str | None
    content: str
    event: str | None
    event_key: str | None

    @property
    def dedupe_key(self) -> str:
        """MESSAGING.md: messages by sender + `MsgId` (one member's `MsgId` never finds
        another's answer), events by `FromUserName` + `CreateTime`."""
        if self.msg_type != "event" and self.msg_id:
            return bounded_key(f"msg:{self.openid}:{self.msg_id}")
        # The event and its key join the pair, so a subscribe and a menu click in the same
        # second are two events; a retry repeats all of them.
        key = (self.event_key or "")[:64]
        return bounded_key(
            f"evt:{self.openid}:{self.create_time}:{self.event or self.msg_type}:{key}"
        )


def read_message(fields: dict) -> WeChatMessage:
    """The message of a parsed `<xml>` document; MalformedXml if a needed field is wrong."""
    field = xmlsafe.field
    msg_type = field(fields, "MsgType").strip().lower()
    created = field(fields, "CreateTime").strip()
    if not (created.isascii() and created.isdigit() and len(created) <= 11):
        raise xmlsafe.MalformedXml("<CreateTime> must be a Unix time")
    openid = field(fields, "FromUserName").strip()
    if not openid or len(openid) > 64:
        raise xmlsafe.MalformedXml("<FromUserName> must be an openid")
    event = field(fields, "Event", required=False)
    msg_id = (field(fields, "MsgId", required=False) or "").strip() or None
    if len(msg_type) > MSG_TYPE_MAX or (event is not None and len(event) > MSG_TYPE_MAX):
        raise xmlsafe.MalformedXml(f"<MsgType> and <Event> are at most {MSG_TYPE_MAX} characters")
    if msg_id is not None and len(msg_id) > MSG_ID_MAX:
        raise xmlsafe.MalformedXml(f"<MsgId> is at most {MSG_ID_MAX} characters")
    return WeChatMessage(
        openid=openid,
        account=field(fields, "ToUserName", required=False) or "",
        msg_type=msg_type,
        create_time=int(created),
        msg_id=msg_id,
        content=field(fields, "Content", required=False) or "",
        event=event.strip().lower() if event else None,
        event_key=field(fields, "EventKey", required=False) or None,
    )


def to_inbound(msg: WeChatMessage) -> Inbound | None:
    """What the conversation gets; None for events the bot does not answer."""
    at = datetime.fromtimestamp(msg.create_time, UTC)
    if msg.msg_type == "event":
        event = msg.event
        if event not in FORWARDED_EVENTS:
            return None
        key = msg.event_key
        if event == "subscribe" and key and key.startswith("qrscene_"):
            key = key.removeprefix("qrscene_")  # subscribed by scanning a QR code with a scene
        return Inbound(channel="wechat", sender=msg.openid, at=at, event=event, event_key=key)
    text = msg.content if msg.msg_type == "text" else ""
    return Inbound(channel="wechat", sender=msg.openid, text=text, at=at, message_id=msg.msg_id)


def _success() -> web.Response:
    return web.Response(text="success", content_type="text/plain")


def _forbidden() -> web.Response:
    return web.Response(status=403, text="forbidden", content_type="text/plain")


def _bad_request(reason: str) -> web.Response:
    return web.Response(status=400, text=reason, content_type="text/plain")


class WeChatWebhook:
    """The two handlers, with what they need from `wechat.*` settings."""

    def __init__(self, settings: WeChatSettings):
        self.token = settings.token
        self.max_age = settings.max_timestamp_age
        self.crypto = (
            WeChatCrypto(settings.token, settings.encoding_aes_key, settings.app_id)
            if settings.encoding_aes_key
            else None
        )

    # ------------------------------------------------------------------ checks

    def _signed(self, signature: str | None, timestamp: str, nonce: str) -> bool:
        if not self.token or not signature:
            return False  # an empty token would let anyone sign
        try:
            check_signature(self.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            return False
        return True

    def _fresh(self, timestamp: str) -> bool:
        """A Unix time in ASCII digits within `max_timestamp_age` of our clock."""
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return False
        return abs(time.time() - int(timestamp)) <= self.max_age

    def _decrypt(self, body: bytes, query) -> str:
        """The inner XML of a safe-mode request, `msg_signature` checked before any XML
        parser sees a byte: raises web.HTTPForbidden (not signed) / MalformedXml."""
        signature = query.get("msg_signature", "")
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        encrypted = self._signed_encrypt(body, signature, timestamp, nonce)
        if encrypted is None:
            raise web.HTTPForbidden(text="forbidden")
        assert self.crypto is not None
        try:
            return self.crypto.decrypt_message({"Encrypt": encrypted}, signature, timestamp, nonce)
        except (InvalidSignatureException, InvalidAppIdException):
            raise web.HTTPForbidden(text="forbidden") from None
        except (ValueError, struct.error, IndexError, TypeError) as exc:
            raise xmlsafe.MalformedXml("cannot decrypt <Encrypt>") from exc

    def _signed_encrypt(self, body: bytes, signature: str, timestamp: str, nonce: str):
        """The `<Encrypt>` value that `msg_signature` covers, or None. A compatible-mode
        envelope also carries the message in plain, whose text could itself look like an
        `<Encrypt>` field: the last few candidates are tried, the last one first."""
        candidates = list(_ENCRYPT.finditer(body))[-ENCRYPT_CANDIDATES:]
        for found in reversed(candidates):
            value = (found[1] or found[2]).decode("ascii")
            signer = WeChatSigner()
            signer.add_data(self.token, timestamp, nonce, value)
            if hmac.compare_digest(signer.signature.encode(), signature.encode()):
                return value
        return None

    # ------------------------------------------------------------------ handlers

    async def verify(self, request: web.Request) -> web.Response:
        """URL verification: echo `echostr` after the signature check."""
        q = request.query
        timestamp = q.get("timestamp", "")
        if not self._fresh(timestamp) or not self._signed(
            q.get("signature"), timestamp, q.get("nonce", "")
        ):
            return _forbidden()
        return web.Response(text=q.get("echostr", ""), content_type="text/plain")

    async def receive(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        app = request.app
        # The request waited about as long as the loop's queue is before it got here.
        started = loop.time() - app[LOOP_LAG].lag
        opts = app[WECHAT_OPTIONS]
        if request.content_length is not None and request.content_length > request.client_max_size:
            raise web.HTTPRequestEntityTooLarge(
                max_size=request.client_max_size, actual_size=request.content_length
            )
        q = request.query
        aes = q.get("encrypt_type", "").lower() == "aes"
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        if not self._fresh(timestamp):
            return _forbidden()
        if aes:
            # msg_signature (checked before decryption) is what authenticates a safe-mode
            # request; a `signature` sent along must be right too.
            if self.crypto is None or not q.get("msg_signature"):
                return _forbidden()
            if "signature" in q and not self._signed(q["signature"], timestamp, nonce):
                return _forbidden()
        elif self.crypto is not None or not self._signed(q.get("signature"), timestamp, nonce):
            return _forbidden()  # with an AES key, safe mode is the only mode
        body = await request.read()
        deadline = started + opts.reply_deadline
        if not aes:
            verdict = eager.start(
                app[WECHAT_REPLAY].first_body(
                    replay.url_key(timestamp, nonce), replay.body_hash(body), int(timestamp)
                )
            )
            if not await eager.finished_by(verdict, deadline):
                # The database cannot say in time whether this body is the signed URL's
                # first: answer `success` now, and handle the message behind it if it is
                # (its answer then goes by the customer-service API) — the deadline
                # bounds the whole request (ISSUE 10.14).
                app[INBOUND_LOG].spawn(self._after_slow_verdict(app, verdict, body))
                return _success()
            if not verdict.result():
                return _forbidden()  # a signed URL already used with another body
        try:
            text = self._decrypt(body, q) if aes else xmlsafe.decode(body)
            msg = read_message(xmlsafe.parse_fields(text))
        except xmlsafe.UnsafeXml:
            return _bad_request("DTD and entity declarations are not accepted")
        except xmlsafe.MalformedXml as exc:
            return _bad_request(str(exc))
        try:
            outcome = await self._respond(app, msg, deadline)
        except HandlingFailed:
            log.exception("no answer for a wechat message")
            raise web.HTTPInternalServerError(text="internal error") from None
        if outcome is None or outcome.text is None:
            return _success()
        return self._reply(msg, outcome.text, aes=aes, nonce=nonce, timestamp=timestamp)

    async def _respond(
        self, app: web.Application, msg: WeChatMessage, deadline: float, *, answered=False
    ):
        """Handle `msg` once (`bot.inbound_log`) and say what to answer by `deadline`: the
        Outcome (its late part already on its way), or None for an event not passed on.
        `answered`: WeChat already got `success`, so the answer goes by the API."""
        inbound = to_inbound(msg)
        if inbound is None:
            return None
        conversation = app[CONVERSATION]
        inbound_log = app[INBOUND_LOG]
        key = msg.dedupe_key
        quick = getattr(conversation, "quick", None)  # bot.conversation.QuickConversation
        outcome = await inbound_log.respond_once(
            "wechat",
            key,
            lambda: conversation.handle(inbound),
            deadline=deadline,
            quick=None if quick is None else lambda: quick(inbound, key),
            answered=answered,
        )
        if outcome.delivers_late:
            inbound_log.spawn(
                inbound_log.deliver_late(
                    outcome, lambda text: self._send_customer_service(app, msg.openid, text)
                )
            )
        return outcome

    async def _after_slow_verdict(
        self, app: web.Application, verdict: asyncio.Future, body: bytes
    ) -> None:
        """A plain request answered `success` before its replay verdict: once the verdict
        says the body is the URL's first, handle it; the answer goes by the API."""
        try:
            if not await verdict:
                return  # a signed URL reused with another body: nothing happens
            msg = read_message(xmlsafe.parse_fields(xmlsafe.decode(body)))
            await self._respond(app, msg, asyncio.get_running_loop().time(), answered=True)
        except (xmlsafe.UnsafeXml, xmlsafe.MalformedXml):
            log.warning("a wechat message answered `success` while slow was malformed")
        except Exception:
            log.exception("no answer for a wechat message answered `success` while slow")

    def _reply(self, msg: WeChatMessage, text: str, *, aes: bool, nonce: str, timestamp: str):
        xml = xmlsafe.text_reply(
            source=msg.account, target=msg.openid, content=text, time=int(time.time())
        )
        if aes:
            assert self.crypto is not None
            xml = self.crypto.encrypt_message(xml, nonce, timestamp or None)
        return web.Response(text=xml, content_type="application/xml")

    @staticmethod
    async def _send_customer_service(app: web.Application, openid: str, text: str) -> None:
        """The late answer, by the customer-service API, retried on retryable failures."""
        opts = app[WECHAT_OPTIONS]
        api = app[WECHAT_API]
        for attempt in range(1, opts.cs_attempts + 1):
            try:
                await api.send_text(openid, text)
                return
            except WeChatApiError as exc:
                if not exc.retryable or attempt >= opts.cs_attempts:
                    raise
                log.warning("customer-service send failed (%s), try %d", exc, attempt)
            await asyncio.sleep(opts.cs_backoff * 2 ** (attempt - 1))


async def _api_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS].wechat
    app[WECHAT_API] = WeChatApi(
        app[HTTP], base_url=s.api_base_url, app_id=s.app_id, app_secret=s.app_secret
    )
    app[WECHAT_REPLAY] = ReplayMemory(app[ENGINE], max_age=s.max_timestamp_age)
    lag = app[LOOP_LAG] = LoopLag()
    lag.start()
    yield
    lag.stop()


def setup(app: web.Application) -> None:
    """Add `GET/POST /wechat` and the API client. Needs `app[SETTINGS]`, and at startup
    `app[HTTP]`, `app[INBOUND_LOG]` and `app[CONVERSATION]`."""
    webhook = WeChatWebhook(app[SETTINGS].wechat)
    if WECHAT_OPTIONS not in app:
        app[WECHAT_OPTIONS] = WeChatOptions()
    app.router.add_get("/wechat", webhook.verify)
    app.router.add_post("/wechat", webhook.receive)
    app.cleanup_ctx.append(_api_ctx)
