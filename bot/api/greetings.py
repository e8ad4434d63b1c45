"""`POST /api/greetings`: an assistant's personal greeting (CONTRACT.md HTTP table).

Auth is the assistant's own token, `Authorization: Bearer <token>` (tokens are stored
hashed: `models.stores.authenticate_assistant`), checked before the body is
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
console); this module only parses, authenticates and serialises. Errors are raised and
answered by `bot.errors.error_middleware` (the refused rule and the rate limit's reason
are their `details()`, its `Retry-After` their `retry_after`).
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.api.common import ASSISTANT_SCHEME, bearer_token, read_object
from bot.api.openapi import describe
from bot.appkeys import SESSIONS, SETTINGS
from bot.errors import Unauthorized, json_response
from models.db import transaction
from models.errors import NotFound
from models.members import get_member_by_phone
from models.outbox.states import SUPPRESSED
from models.phone import normalise_phone
from models.stores import authenticate_assistant
from models.tables.outbox import OutboxMessage
from models.types import utcnow
from scheduler import greetings

routes = web.RouteTableDef()
PATH = "/api/greetings"


class GreetingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    member: Annotated[str, Field(min_length=1, max_length=40)]
    occasion: Annotated[str, Field(min_length=1, max_length=40)]
    note: Annotated[str, Field(max_length=2000)] | None = None
    """Checked by `scheduler.greeting_checks.clean_note` (at most NOTE_MAX characters)."""


def message_view(message: OutboxMessage, tz) -> dict[str, Any]:
    """What the API answers about a greeting in the outbox."""
    suppressed = message.status == SUPPRESSED
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
@describe(
    "Queue an assistant's greeting",
    body=GreetingIn,
    ok={202: "queued or suppressed", 200: "already queued"},
    auth=ASSISTANT_SCHEME,
)
async def post_greeting(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    sessions = request.app[SESSIONS]
    token = bearer_token(request)
    async with transaction(sessions) as session:
        assistant = await authenticate_assistant(session, token=token)
        assistant_id = assistant.id if assistant is not None else None
    if assistant_id is None:
        raise Unauthorized("missing, unknown or inactive assistant token", "authorization")
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
    return json_response(body, status=202 if created else 200)
