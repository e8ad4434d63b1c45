"""What the JSON endpoints share: the bearer credential, the JSON body, the operator
check and the request helpers of the operator routes.

The operator routes (key) and `bot.api.greetings` (assistant token) both read
`Authorization: Bearer <credential>` with `bearer_token` and their bodies with
`read_object`. An operator handler is wrapped by `operator`, which checks the key
against `settings.api.keys` before anything is read or written (401 +
`WWW-Authenticate: Bearer` otherwise). Errors are raised and answered by
`bot.errors.error_middleware` as `{"error", "field"}` with their 4xx status, logging
one INFO line per error (route pattern only: no phone numbers).

A handler parses the body (`read_object`, then a pydantic model), makes one domain
call inside one transaction (`tx`: a domain error rolls all of it back) and
serialises the result. No SQL in the API.
"""

from __future__ import annotations

import functools
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.appkeys import LOYALTY, SESSIONS, SETTINGS
from bot.errors import Unauthorized
from models import members
from models.clock import brand_today, parse_aware
from models.db import transaction
from models.errors import DomainError, InvalidInput, NotFound
from models.strict import find_bad_text
from models.types import utcnow

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^\S+$")]
API_KEY_SCHEME = "apiKey"
"""The operator routes' security in `bot.api.openapi` (`operator` marks its handlers)."""
ASSISTANT_SCHEME = "assistantToken"
"""The assistant-token routes' (greetings, inbox)."""


class BadRequest(DomainError):
    """The body is not a JSON object."""

    status = 400


def bearer_token(request: web.Request) -> str:
    """The credential of `Authorization: Bearer <credential>`; "" when there is none."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_object(request: web.Request, *, optional: bool = False) -> dict:
    """The body as a JSON object (any Content-Type). Numbers with a fraction become
    Decimal, so money stays exact. Malformed, not an object, or a key or string holding
    a control character or an unpaired surrogate (`models.strict`) → 400."""
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    try:
        data = json.loads(
            raw.decode("utf-8-sig"), parse_float=Decimal, parse_constant=_no_constants
        )
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        raise BadRequest("malformed JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object")
    field = find_bad_text(data)
    if field is not None:
        raise BadRequest("control characters and unpaired surrogates are not allowed", field)
    return data


# --------------------------------------------------------------------------- operator routes


def _authorised(request: web.Request) -> bool:
    given = bearer_token(request)
    if not given:
        return False
    token = given.encode("utf-8", "surrogateescape")
    match = False
    for key in request.app[SETTINGS].api.keys:  # compare with every key: no early exit
        match |= hmac.compare_digest(token, key.encode("utf-8"))
    return match


def operator(handler: Handler) -> Handler:
    """API-key auth for one operator route (checked before the body is read)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not _authorised(request):
            raise Unauthorized("missing or wrong API key", "authorization")
        return await handler(request)

    wrapped.auth_scheme = API_KEY_SCHEME  # type: ignore[attr-defined]
    return wrapped


def context(request: web.Request):
    settings = request.app[SETTINGS]
    tz = settings.brand.tz
    return request.app[LOYALTY], tz, brand_today(tz)


def tx(request: web.Request):
    return transaction(request.app[SESSIONS])


def when(value: str | None, tz, field: str) -> datetime:
    """An ISO 8601 time (brand-local when it has no offset), not in the future; None → now."""
    now = utcnow()
    if value is None:
        return now
    try:
        at = parse_aware(value, tz)
        if not (datetime(2000, 1, 1, tzinfo=UTC) <= at <= now + timedelta(days=1)):
            raise InvalidInput("the time must lie between 2000 and now", field)
    except (ValueError, OverflowError):
        raise InvalidInput("expected an ISO 8601 date and time", field) from None
    return at


async def member_or_404(session, phone: str, field: str) -> members.Member:
    member = await members.get_member_by_phone(session, phone=phone)
    if member is None:
        raise NotFound("no member with this phone", field)
    return member


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
