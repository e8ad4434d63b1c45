"""What the JSON endpoints share: the bearer credential and the JSON body.

`bot.api` (operator key) and `bot.greetings_api` (assistant token) both read
`Authorization: Bearer <credential>` with `bearer_token` and their bodies with
`read_object`; their errors are raised and answered by `bot.errors.error_middleware`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from aiohttp import web

from models.errors import DomainError
from models.strict import find_bad_text


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
