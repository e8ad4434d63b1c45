"""The WeChat Official Account API, asynchronously: access token + customer-service messages.

wechatpy has no asyncio client (LIBRARIES.md), so this posts the same JSON with the
app's aiohttp session. Every URL starts at `wechat.api_base_url`, the token request
included (CONTRACT.md: point it at a sandbox or a fake in tests).

- Access token: `GET {base}/cgi-bin/token?grant_type=client_credential&appid=…&secret=…`,
  cached until shortly before `expires_in` runs out; one fetch at a time, and every
  caller that arrives while it is under way shares its outcome — the token, or its
  failure (a hanging token endpoint costs one timeout, not one per waiting message);
  fetched afresh when WeChat answers 40001 / 40014 / 42001 (token
  invalid or expired — e.g. another process fetched a newer one), and the call retried once.
- Customer-service text: `POST {base}/cgi-bin/message/custom/send?access_token=…` with
  `{"touser", "msgtype": "text", "text": {"content"}}` (MESSAGING.md: the answer that
  missed the 5-second passive-reply deadline goes this way; proactive messages inside
  the member's 48-hour / 5-message window too).
- Template message: `POST {base}/cgi-bin/message/template/send?access_token=…` with
  `{"touser", "template_id", "data": {field: {"value": …}}}` (service notices only,
  MESSAGING.md); the answer's `msgid` identifies it.

WeChat reports errors as HTTP 200 with `{"errcode": n, "errmsg": …}`. `WeChatApiError`
(`scheduler.send.providers`, with the codes below and the `WeChatSender` protocol) says
whether trying again later may help (`retryable`: HTTP 429/5xx, network, errcode -1
"system busy", 45009 daily quota reached) and, when WeChat sent one, how long it asked
us to wait (`retry_after`, from a `Retry-After` header); 45015 / 45047 (the member's 48-hour window
is closed, or its 5 messages are used up), 43004 (the member does not follow the
account) and the like are final (`OUT_OF_WINDOW`, `NOT_FOLLOWING`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp

from bot.retry_after import parse_retry_after
from scheduler.send.providers import WeChatApiError

TOKEN_INVALID = frozenset({40001, 40014, 42001})
REFRESH_MARGIN = 300.0
"""Seconds before `expires_in` runs out at which the cached token is replaced."""


class WeChatApi:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        base_url: str,
        app_id: str,
        app_secret: str,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._http = http
        self._base = base_url.rstrip("/")
        self._app_id = app_id
        self._secret = app_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._token: str | None = None
        self._token_valid_until = 0.0
        self._fetching: asyncio.Future[str] | None = None
        """The token fetch under way: every caller meanwhile awaits this one."""

    async def access_token(self) -> str:
        """A valid access token, fetched only when the cached one is missing or stale.
        Concurrent callers share one fetch and its outcome (a failure included)."""
        token = self._token
        if token is not None and self._clock() < self._token_valid_until:
            return token
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.ensure_future(self._fetch_token())
            # A failure nobody awaits any more must not be reported as never retrieved.
            self._fetching.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(self._fetching)

    async def _fetch_token(self) -> str:
        data = await self._request(
            "GET",
            "/cgi-bin/token",
            params={
                "grant_type": "client_credential",
                "appid": self._app_id,
                "secret": self._secret,
            },
        )
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise WeChatApiError("token answer without access_token")
        expires_in = float(data.get("expires_in") or 7200)
        margin = min(REFRESH_MARGIN, expires_in / 2)
        self._token = token
        self._token_valid_until = self._clock() + expires_in - margin
        return token

    def forget_token(self, token: str) -> None:
        """Drop `token` if it is still the cached one (WeChat said it is no longer valid)."""
        if self._token == token:
            self._token = None
            self._token_valid_until = 0.0

    async def send_text(self, openid: str, content: str) -> None:
        """A customer-service text message to `openid`."""
        await self._call(
            "/cgi-bin/message/custom/send",
            {"touser": openid, "msgtype": "text", "text": {"content": content}},
        )

    async def send_template(
        self, openid: str, template_id: str, data: dict[str, str], *, url: str | None = None
    ) -> str:
        """A template message to `openid`; `data` maps the template's fields to their
        values. Returns WeChat's `msgid` (as text)."""
        payload: dict = {
            "touser": openid,
            "template_id": template_id,
            "data": {name: {"value": value} for name, value in data.items()},
        }
        if url:
            payload["url"] = url
        answer = await self._call("/cgi-bin/message/template/send", payload)
        return str(answer.get("msgid", ""))

    async def _call(self, path: str, payload: dict) -> dict:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        token = await self.access_token()
        try:
            return await self._request("POST", path, params={"access_token": token}, body=body)
        except WeChatApiError as exc:
            if exc.errcode not in TOKEN_INVALID:
                raise
            self.forget_token(token)
        token = await self.access_token()
        return await self._request("POST", path, params={"access_token": token}, body=body)

    async def _request(
        self, method: str, path: str, *, params: dict, body: bytes | None = None
    ) -> dict:
        headers = {"Content-Type": "application/json; charset=utf-8"} if body else None
        try:
            async with self._http.request(
                method,
                self._base + path,
                params=params,
                data=body,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                if resp.status != 200:
                    raise WeChatApiError(
                        f"HTTP {resp.status} from {path}",
                        http_status=resp.status,
                        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                    )
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise WeChatApiError(f"{path}: {type(exc).__name__}") from exc
        if not isinstance(data, dict):
            raise WeChatApiError(f"{path}: answer is not a JSON object")
        errcode = data.get("errcode") or 0
        if errcode != 0:
            raise WeChatApiError(
                f"{path}: errcode {errcode} {data.get('errmsg', '')}".strip(), errcode=errcode
            )
        return data
