"""Local stand-ins for the WeChat and Twilio APIs, as aiohttp apps for `aiohttp_server`.

They record what they were asked and can be told to misbehave:

    fake = FakeWeChatApi()
    server = await aiohttp_server(fake.app())
    fake.failures.append(500)            # the next call answers HTTP 500
    fake.failures.append(("errcode", 40001))  # … or WeChat's "invalid access token"
    fake.hangs = 1                       # the next call gets no answer until release()
    fake.failures.append((429, {"Retry-After": "30"}))  # HTTP 429 with these headers
    fake.down = 503                      # every call answers 503 until set back to None
    fake.token_hangs = 1                 # WeChat: the next token request hangs likewise
    await fake.wait_sent(1)              # until one customer-service message arrived

Both answer like the real services in the parts the bot uses (paths, JSON shapes,
error bodies); nothing else is implemented.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

WECHAT_APP_ID = "wx0123456789abcdef"
WECHAT_APP_SECRET = "test-wechat-secret"
TWILIO_ACCOUNT_SID = "AC" + "0" * 32
TWILIO_AUTH_TOKEN = "test-twilio-auth-token"

Failure = int | tuple[str, int] | tuple[int, dict[str, str]]
"""An HTTP status to answer with, or ("errcode", n) / ("code", n) for an API error body,
or (status, headers) for an HTTP status with headers (e.g. `Retry-After`)."""


def _status(failure: Failure) -> tuple[int, dict[str, str]] | None:
    """(status, headers) of an HTTP failure; None for an API error body."""
    if isinstance(failure, int):
        return failure, {}
    if isinstance(failure[0], int):
        return failure[0], dict(failure[1])
    return None


class _Recorder:
    def __init__(self) -> None:
        self.delay = 0.0
        """Seconds to wait before answering each request (a slow service)."""
        self.failures: list[Failure] = []
        """Answers to give, in order, instead of success (one per request)."""
        self.hangs = 0
        """The next N requests get no answer until `release()` (or the server shuts down),
        then HTTP 503, and nothing is recorded: a call the client gave up on and the
        service never accepted."""
        self.hung = 0
        """Requests held by `hangs` so far."""
        self.down: int | None = None
        """While set, every send answers this HTTP status (an outage); None = up."""
        self.received: list[float] = []
        """When each send request arrived (`time.monotonic()`), answered or not."""
        self._released = asyncio.Event()
        self._changed = asyncio.Event()

    def release(self) -> None:
        """Let every held request answer (its 503)."""
        self._released.set()

    def hold(self, count: int) -> None:
        """Hold the next `count` requests (`hangs`), also after an earlier `release()`."""
        if self._released.is_set():
            self._released = asyncio.Event()
        self.hangs = count

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.release()

    def _new_app(self) -> web.Application:
        app = web.Application()
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _hang(self) -> web.Response | None:
        """The 503 of a held request, or None when this request is not held."""
        if self.hangs <= 0:
            return None
        self.hangs -= 1
        self.hung += 1
        self._notify()
        await self._released.wait()
        return web.Response(status=503, text="gave up waiting")

    def _notify(self) -> None:
        self._changed.set()

    async def _until(self, ready, within: float) -> None:
        async def wait() -> None:
            while not ready():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), within)

    async def _pause(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)


class FakeWeChatApi(_Recorder):
    """`GET /cgi-bin/token` and `POST /cgi-bin/message/custom/send`."""

    def __init__(self, *, app_id: str = WECHAT_APP_ID, app_secret: str = WECHAT_APP_SECRET):
        super().__init__()
        self.app_id = app_id
        self.app_secret = app_secret
        self.expires_in = 7200
        self.token_requests: list[dict[str, str]] = []
        self.sent: list[dict] = []
        """Accepted customer-service messages, each with the `access_token` it came with."""
        self.templates_sent: list[dict] = []
        """Accepted template messages (`touser`, `template_id`, `data`, `access_token`, `msgid`)."""
        self._msgids = itertools.count(1_000_001)
        self.refused: list[dict] = []
        self.valid_tokens: set[str] = set()
        self.token_hangs = 0
        """The next N token requests get no answer until `release()` (then HTTP 503)."""

    def expire_tokens(self) -> None:
        """Every token issued so far becomes invalid (errcode 42001 on use)."""
        self.valid_tokens.clear()

    async def wait_sent(self, count: int, within: float = 5.0) -> None:
        await self._until(lambda: len(self.sent) >= count, within)

    async def wait_templates(self, count: int, within: float = 5.0) -> None:
        await self._until(lambda: len(self.templates_sent) >= count, within)

    def app(self) -> web.Application:
        app = self._new_app()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._send)
        app.router.add_post("/cgi-bin/message/template/send", self._send_template)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        await self._pause()
        q = dict(request.query)
        self.token_requests.append(q)
        self._notify()
        if self.token_hangs > 0:
            self.token_hangs -= 1
            await self._released.wait()
            return web.Response(status=503, text="gave up waiting")
        if q.get("appid") != self.app_id or q.get("secret") != self.app_secret:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        token = "tok-" + secrets.token_hex(8)
        self.valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": self.expires_in})

    async def _send(self, request: web.Request) -> web.Response:
        return await self._accept(request, self.sent)

    async def _send_template(self, request: web.Request) -> web.Response:
        return await self._accept(request, self.templates_sent, msgid=True)

    async def _accept(
        self, request: web.Request, into: list[dict], *, msgid: bool = False
    ) -> web.Response:
        self.received.append(time.monotonic())
        await self._pause()
        held = await self._hang()
        if held is not None:
            return held
        payload = await request.json()
        record = {"access_token": request.query.get("access_token"), **payload}
        if self.down is not None or self.failures:
            failure = self.down if self.down is not None else self.failures.pop(0)
            self.refused.append(record)
            self._notify()
            http = _status(failure)
            if http is not None:
                return web.Response(status=http[0], text="unavailable", headers=http[1])
            return web.json_response({"errcode": failure[1], "errmsg": "fake error"})
        if record["access_token"] not in self.valid_tokens:
            self.refused.append(record)
            self._notify()
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        answer: dict = {"errcode": 0, "errmsg": "ok"}
        if msgid:
            record["msgid"] = answer["msgid"] = next(self._msgids)
        into.append(record)
        self._notify()
        return web.json_response(answer)


class FakeTwilioApi(_Recorder):
    """`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP basic auth."""

    def __init__(
        self, *, account_sid: str = TWILIO_ACCOUNT_SID, auth_token: str = TWILIO_AUTH_TOKEN
    ):
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, str]] = []
        """Accepted messages: the form fields (To, From, Body, StatusCallback, …) and `Sid`."""
        self.refused: list[dict[str, str]] = []
        self.before_answer: Callable[[dict[str, str]], Awaitable[None]] | None = None
        """Awaited with each accepted message (its `Sid` set) before the API answers — e.g.
        to deliver its status callback before the send call returns."""
        self._ids = itertools.count(1)
        self.refuse_to: dict[str, Failure] = {}
        """Numbers every message to which gets this failure (a message the service keeps
        refusing while it accepts others)."""

    async def wait_messages(self, count: int, within: float = 5.0) -> None:
        await self._until(lambda: len(self.messages) >= count, within)

    def app(self) -> web.Application:
        app = self._new_app()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        return app

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    async def _create(self, request: web.Request) -> web.Response:
        self.received.append(time.monotonic())
        await self._pause()
        held = await self._hang()
        if held is not None:
            return held
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if not self._authorised(request) or request.match_info["sid"] != self.account_sid:
            self.refused.append(form)
            self._notify()
            return self._error(401, 20003, "Authenticate")
        refuse = self.refuse_to.get(form.get("To", ""))
        if self.down is not None or self.failures or refuse is not None:
            if refuse is not None:
                failure: Failure = refuse
            else:
                failure = self.down if self.down is not None else self.failures.pop(0)
            self.refused.append(form)
            self._notify()
            http = _status(failure)
            if http is not None:
                return self._error(http[0], None, "fake failure", headers=http[1])
            return self._error(400, failure[1], "fake refusal")
        sid = f"SM{next(self._ids):032x}"
        accepted = {**form, "Sid": sid}
        self.messages.append(accepted)
        self._notify()
        if self.before_answer is not None:
            await self.before_answer(accepted)
        return web.json_response(
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": form.get("To"),
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form.get("Body"),
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            },
            status=201,
        )

    @staticmethod
    def _error(
        status: int, code: int | None, message: str, *, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(
            {"code": code, "message": message, "more_info": "", "status": status},
            status=status,
            headers=headers,
        )
