"""JSON errors at the HTTP edge: every 4xx is `{"error": …, "field": …}`, never a traceback.

The one translator is `error_middleware`: a handler raises a `models.errors.DomainError`
(or a pydantic `ValidationError` from parsing its body) and the middleware answers it —
its status, `{"error": message, "field": field, **details()}`, `Retry-After` when the
error knows it, `WWW-Authenticate: Bearer` for `Unauthorized` — and logs one INFO line
on ``memberbot.api`` (method and route pattern only: no phone numbers). Pages that answer
in their own shape (the staff console's HTML, the WeChat and SMS webhooks) catch their
errors themselves.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from models.errors import DomainError

log = logging.getLogger("memberbot.http")
api_log = logging.getLogger("memberbot.api")


class Unauthorized(DomainError):
    """No valid bearer credential (API key, assistant token): 401 + `WWW-Authenticate`."""

    status = 401


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_response(body, *, status: int = 200) -> web.Response:
    """JSON as readable UTF-8 (Chinese names stay Chinese, not \\u escapes)."""
    return web.json_response(body, status=status, dumps=_dumps)


def json_error(status: int, error: str, field: str | None = None) -> web.Response:
    return json_response({"error": error, "field": field}, status=status)


def describe_validation(exc: ValidationError) -> tuple[str, str | None]:
    """(error, field) for the first problem pydantic found."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    if err["type"] == "extra_forbidden":
        return "unknown field", field
    if err["type"] == "missing":
        return "missing field", field
    return err["msg"].removeprefix("Value error, "), field


def _answer(
    request: web.Request, status: int, error: str, field: str | None, **details: Any
) -> web.Response:
    """The JSON error, logged once (route pattern only)."""
    resource = request.match_info.route.resource
    pattern = resource.canonical if resource is not None else "?"
    api_log.info("%s %s -> %d %s (field %s)", request.method, pattern, status, error, field)
    return json_response({"error": error, "field": field, **details}, status=status)


def domain_answer(request: web.Request, exc: DomainError) -> web.Response:
    """The JSON answer to a domain error."""
    response = _answer(request, exc.status, exc.message, exc.field, **exc.details())
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Domain errors and bad bodies become JSON 4xx (an oversized body only on /api);
    anything unexpected a JSON 500."""
    try:
        return await handler(request)
    except DomainError as exc:
        return domain_answer(request, exc)
    except ValidationError as exc:
        return _answer(request, 422, *describe_validation(exc))
    except web.HTTPRequestEntityTooLarge:
        if request.path.startswith("/api/"):
            return _answer(request, 413, f"body larger than {request.client_max_size} bytes", None)
        raise
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal error", None)
