"""JSON errors at the HTTP edge: every 4xx is `{"error": …, "field": …}`, never a traceback."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from pydantic import ValidationError

from models.errors import DomainError

log = logging.getLogger("memberbot.http")


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


def from_validation(exc: ValidationError) -> web.Response:
    error, field = describe_validation(exc)
    return json_error(422, error, field)


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Domain errors and bad bodies become JSON 4xx on /api; anything unexpected a JSON 500."""
    try:
        return await handler(request)
    except DomainError as exc:
        return json_error(exc.status, exc.message, exc.field)
    except ValidationError as exc:
        return from_validation(exc)
    except web.HTTPRequestEntityTooLarge:
        if request.path.startswith("/api/"):
            return json_error(413, f"body larger than {request.client_max_size} bytes", None)
        raise
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal error", None)
