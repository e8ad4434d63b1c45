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
- What goes to the conversation: `bot.channels.wechat_message`; other events are
  acknowledged with `success` and not passed on.
- Retries and the 5-second deadline: `bot.channels.respond` and `bot.inbound_log` (key:
  `WeChatMessage.dedupe_key`). An answer not ready within `reply_deadline` is replaced
  by `success` and sent through the customer-service API when it is ready. The
  deadline counts from when the request arrived as well as the adapter can tell
  (`bot.loop_lag`: the time it waited for the event loop) and bounds the whole
  request, database writes included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from bot import eager
from bot.appkeys import ENGINE, HTTP, INBOUND_LOG, SETTINGS
from bot.channels import respond, xmlsafe
from bot.channels import wechat_replay as replay
from bot.channels.wechat_message import WeChatMessage, read_message, to_inbound
from bot.channels.wechat_replay import ReplayMemory
from bot.channels.wechat_signing import WeChatSigning
from bot.loop_lag import LoopLag
from bot.wechat_api import WeChatApi
from scheduler.send.providers import WeChatApiError

log = logging.getLogger("memberbot.wechat")


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

LOOP_LAG = web.AppKey("loop_lag", LoopLag)


def _success() -> web.Response:
    return web.Response(text="success", content_type="text/plain")


def _forbidden() -> web.Response:
    return web.Response(status=403, text="forbidden", content_type="text/plain")


def _bad_request(reason: str) -> web.Response:
    return web.Response(status=400, text=reason, content_type="text/plain")


class WeChatWebhook(WeChatSigning):
    """The two handlers, with what they need from `wechat.*` settings."""

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
        inbound = to_inbound(msg)
        if inbound is None:
            return _success()  # an event the bot does not answer

        def render(text: str | None) -> web.Response:
            if text is None:
                return _success()
            return self._reply(msg, text, aes=aes, nonce=nonce, timestamp=timestamp)

        return await respond.respond(
            app,
            inbound,
            msg.dedupe_key,
            deadline=deadline,
            render=render,
            deliver=self._deliver_to(app, msg),
        )

    def _deliver_to(self, app: web.Application, msg: WeChatMessage):
        return lambda text: self._send_customer_service(app, msg.openid, text)

    async def _after_slow_verdict(
        self, app: web.Application, verdict: asyncio.Future, body: bytes
    ) -> None:
        """A plain request answered `success` before its replay verdict: once the verdict
        says the body is the URL's first, handle it; the answer goes by the API."""
        try:
            if not await verdict:
                return  # a signed URL reused with another body: nothing happens
            msg = read_message(xmlsafe.parse_fields(xmlsafe.decode(body)))
            inbound = to_inbound(msg)
            if inbound is not None:  # its answer goes by the customer-service API
                await respond.answer(
                    app,
                    inbound,
                    msg.dedupe_key,
                    deadline=asyncio.get_running_loop().time(),
                    deliver=self._deliver_to(app, msg),
                    answered=True,
                )
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
