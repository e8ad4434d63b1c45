"""The outermost middleware: a request id, the HTTP metrics and the access log.

- Request id: the load balancer's `X-Request-Id` when it is a plain token (8-64 of
  `A-Z a-z 0-9 . _ -`; haproxy's `unique-id-format`, nginx's `$request_id`), else a new
  random one. It is set in `models.context.request_id` for everything the request
  does (the log lines, the outbox rows it creates) and sent back as `X-Request-Id`.
- Metrics (`bot.metrics.HttpMetrics`): every request counted by endpoint group and
  status, its duration in a histogram.
- The access log (`[logging] access_log`): "all" writes one line per request, "errors"
  (the default) only for 4xx/5xx answers and requests slower than
  `logging.slow_request`, "off" none. The line is the method, the path (never the
  query: WeChat's carries signatures and the openid), the status and the duration. A
  line per request cost ~18 % of the webhook's busy CPU with aiohttp's own access
  logger, which `memberbot serve` turns off (`bot.cli.serve`).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.appkeys import SETTINGS
from bot.metrics import HTTP_METRICS
from models.context import request_id

log = logging.getLogger("memberbot.access")

_GIVEN_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_LETTERS = str.maketrans("0123456789", "ghijklmnop")
"""A new id is 16 letters (hex with its digits spelt as g-p): never a digit run that
could be mistaken for a phone number where ids are read back."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _GIVEN_ID.fullmatch(given) else secrets.token_hex(8).translate(_LETTERS)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = _request_id(request)
    token = request_id.set(rid)
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = rid
        raise
    finally:
        elapsed = time.perf_counter() - start
        metrics = request.app.get(HTTP_METRICS)
        if metrics is not None:
            metrics.observe(request.path, status, elapsed)
        _access_line(request, status, elapsed)
        request_id.reset(token)


def _access_line(request: web.Request, status: int, elapsed: float) -> None:
    options = request.app[SETTINGS].logging
    if options.access_log == "off":
        return
    if options.access_log == "errors" and status < 400 and elapsed < options.slow_request:
        return
    level = logging.WARNING if status >= 500 else logging.INFO
    log.log(
        level, "%s %s %d %.1fms", request.method, ascii(request.path)[1:-1], status,
        elapsed * 1000,
    )  # fmt: skip
