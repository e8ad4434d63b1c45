"""`POST /api/greetings`: an assistant's personal greeting (CONTRACT.md HTTP table).

Auth is the assistant's own token, `Authorization: Bearer <token>` (tokens are stored
hashed: `scheduler.greetings.authenticate_assistant`), checked before the body is
read; a missing, unknown or inactive token is 401 with `WWW-Authenticate: Bearer`.

Body `{"member": "+86…" | 11 digits, "occasion": …, "note": "…" (optional)}`. Answers:

- 202 `{"id", "status", "channel", "send_after", "text", "reason"?, …}`: queued — or
  recorded ``suppressed`` with its reason (stopped, no_channel, capped);
- 200, same body: the identical greeting was already queued (nothing new);
- 403 the member is not this assistant's; 404 unknown member;
- 422 `{"error", "field", "rule"}`: unknown occasion, unusable note, or a message rule
  the text breaks (checked before the duplicate check);
- 429 `{"error", "field", "reason": "rate_limited"}` with `Retry-After`.

The logic lives in `scheduler.greetings` (shared with `memberbot greet` and the staff
console); this module only parses, authenticates and serialises.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.api import read_object
from bot.appkeys import SESSIONS, SETTINGS
from bot.errors import describe_validation, json_response
from models.db import transaction
from models.errors import DomainError, NotFound
from models.members import get_member_by_phone
from models.phone import normalise_phone
from models.tables import OutboxMessage
from models.types import utcnow
from scheduler import greetings

log = logging.getLogger("memberbot.api")
routes = web.RouteTableDef()
PATH = "/api/greetings"


def setup(app: web.Application) -> None:
    """Add the route (called from `bot.api.setup`)."""
    app.router.add_routes(routes)


class GreetingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    member: Annotated[str, Field(min_length=1, max_length=40)]
    occasion: Annotated[str, Field(min_length=1, max_length=40)]
    note: Annotated[str, Field(max_length=2000)] | None = None
    """Checked by `scheduler.greetings.clean_note` (at most NOTE_MAX characters)."""


def _error(status: int, error: str, field: str | None, **extra: Any) -> web.Response:
    log.info("POST %s -> %d %s (field %s)", PATH, status, error, field)
    return json_response({"error": error, "field": field, **extra}, status=status)


def _bearer(request: web.Request) -> str:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def message_view(message: OutboxMessage, tz) -> dict[str, Any]:
    """What the API answers about a greeting in the outbox."""
    suppressed = message.status == "suppressed"
    body: dict[str, Any] = {
        "id": message.id,
        "status": message.status,
        "channel": message.channel,
        "send_after": None if suppressed else message.send_after.astimezone(tz).isoformat(),
        "text": message.text,
        "kind": message.kind,
        "locale": message.locale,
    }
    if message.reason:
        body["reason"] = message.reason
    return body


@routes.post(PATH)
async def post_greeting(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    sessions = request.app[SESSIONS]
    token = _bearer(request)
    async with transaction(sessions) as session:
        assistant = await greetings.authenticate_assistant(session, token=token)
        assistant_id = assistant.id if assistant is not None else None
    if assistant_id is None:
        response = _error(401, "missing, unknown or inactive assistant token", "authorization")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    try:
        data = GreetingIn.model_validate(await read_object(request))
        phone = normalise_phone(data.member, "member")
        async with transaction(sessions) as session:
            member = await get_member_by_phone(session, phone=phone)
            if member is None:
                raise NotFound("no member with this phone", "member")
            message, created = await greetings.queue_greeting(
                session,
                settings=settings,
                assistant_id=assistant_id,
                member_id=member.id,
                occasion=data.occasion,
                note=data.note or "",
                now=utcnow(),
            )
            body = message_view(message, settings.brand.tz)
    except greetings.GreetingRefused as exc:
        return _error(422, exc.message, exc.field, rule=exc.rule)
    except greetings.RateLimited as exc:
        response = _error(429, exc.message, exc.field, reason=exc.reason)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except DomainError as exc:
        return _error(exc.status, exc.message, exc.field)
    except ValidationError as exc:
        return _error(422, *describe_validation(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"body larger than {request.client_max_size} bytes", None)
    return json_response(body, status=202 if created else 200)
