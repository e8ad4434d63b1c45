"""`/api/inbox`: the conversations handed to a person (CONTRACT.md HTTP table; `models.inbox`).

Auth is the assistant's own token, `Authorization: Bearer <token>`, checked before
anything else is read (401 + `WWW-Authenticate: Bearer` when missing, unknown or
inactive) — the same as `POST /api/greetings`. An assistant sees the conversations of
their own members; a manager also those of their store and of senders who are no
member.

- `GET /api/inbox[?status=open|answered|closed]` → 200 `{"conversations": [{"id",
  "member" (E.164 or null), "name", "channel", "status", "updated_at", "messages":
  [{"from": "member"|"assistant"|"bot", "text", "at", "channel", "status"?}]}]}`,
  last changed first; another `status` → 422.
- `POST /api/inbox/{id}/reply` `{"text"}` → 202 `{"status": "sent"|"failed", "channel",
  "via"}` (`scheduler.send.inbox_reply.answer`); 403 another assistant's conversation,
  404 unknown, 409 closed or no channel reaches the sender, 422 an empty or too long text.
- `POST /api/inbox/{id}/close` → 200 `{"id", "status": "closed"}` (again: the same).
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from bot.api.common import ASSISTANT_SCHEME, Body, bearer_token, read_object
from bot.api.openapi import ROW_ID, describe
from bot.appkeys import SESSIONS, SETTINGS, SMS_SENDER
from bot.channels.wechat import WECHAT_API
from bot.errors import Unauthorized, json_response
from models import inbox
from models.db import transaction
from models.errors import InvalidInput, NotFound
from models.inbox import Thread
from models.staff_auth import MANAGER
from models.staff_queries import Scope
from models.stores import authenticate_assistant
from models.strict import row_id
from models.types import utcnow
from scheduler.send import inbox_reply

routes = web.RouteTableDef()


async def _scope(request: web.Request) -> Scope:
    token = bearer_token(request)
    async with transaction(request.app[SESSIONS]) as session:
        assistant = await authenticate_assistant(session, token=token)
        if assistant is None:
            raise Unauthorized("missing, unknown or inactive assistant token", "authorization")
        return Scope(assistant.id, assistant.store_id, assistant.role == MANAGER)


def _id(request: web.Request) -> int:
    conversation_id = row_id(request.match_info["id"])
    if conversation_id is None:
        raise NotFound("no such conversation", "id")
    return conversation_id


def thread_view(thread: Thread, tz) -> dict[str, Any]:
    c, m = thread.conversation, thread.member
    phone = m.phone if m is not None else (c.address if c.channel == "sms" else None)
    messages = []
    for message in thread.messages:
        at = message.at.astimezone(tz).isoformat()
        item = {"from": message.author, "text": message.text, "at": at, "channel": message.channel}
        if message.status:
            item["status"] = message.status
        messages.append(item)
    return {
        "id": c.id,
        "member": phone,
        "name": m.name if m is not None else None,
        "channel": c.channel,
        "status": c.status,
        "updated_at": c.updated_at.astimezone(tz).isoformat(),
        "messages": messages,
    }


@routes.get("/api/inbox")
@describe(
    "The conversations handed to people",
    query={"status": "open | answered | closed"},
    auth=ASSISTANT_SCHEME,
)
async def list_inbox(request: web.Request) -> web.Response:
    scope = await _scope(request)
    status = request.query.get("status")
    if status is not None and status not in inbox.STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(inbox.STATUSES)}", "status")
    async with transaction(request.app[SESSIONS]) as session:
        found = await inbox.threads(session, scope=scope, status=status)
    tz = request.app[SETTINGS].brand.tz
    return json_response({"conversations": [thread_view(t, tz) for t in found]})


class ReplyIn(Body):
    text: Annotated[str, Field(min_length=1, max_length=inbox.TEXT_MAX)]
    """Checked again by `models.inbox.clean_reply` (no control characters)."""


@routes.post("/api/inbox/{id}/reply")
@describe(
    "Answer a conversation",
    body=ReplyIn,
    ok={202: "sent or failed"},
    path={"id": ROW_ID},
    auth=ASSISTANT_SCHEME,
)
async def reply(request: web.Request) -> web.Response:
    scope = await _scope(request)
    conversation_id = _id(request)
    data = ReplyIn.model_validate(await read_object(request))
    delivery = await inbox_reply.answer(
        request.app[SESSIONS],
        scope=scope,
        conversation_id=conversation_id,
        text=data.text,
        now=utcnow(),
        settings=request.app[SETTINGS],
        wechat=request.app.get(WECHAT_API),
        sms=request.app[SMS_SENDER],
    )
    body = {"status": delivery.status, "channel": delivery.channel, "via": delivery.via}
    return json_response(body, status=202)


@routes.post("/api/inbox/{id}/close")
@describe("Close a conversation", path={"id": ROW_ID}, auth=ASSISTANT_SCHEME)
async def close(request: web.Request) -> web.Response:
    scope = await _scope(request)
    conversation_id = _id(request)
    await inbox_reply.close(
        request.app[SESSIONS], scope=scope, conversation_id=conversation_id, now=utcnow()
    )
    return json_response({"id": conversation_id, "status": inbox.CLOSED})
