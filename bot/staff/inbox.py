"""The inbox pages of the staff console (docs/staff-console.md "Inbox"): the conversations
handed to a person (`models.inbox`), the thread with the member's facts beside it, a
reply box and a close button. The header's count of conversations waiting is
`bot.staff.auth.INBOX_OPEN`.

Same rules as every console page (`console`: session, CSRF on POST); the same scope as
`/api/inbox` — another assistant's conversation is 403, an unknown one 404. Phone
numbers are masked; the answer goes out through `scheduler.send.inbox_reply.answer`, the
API's own path.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.appkeys import SESSIONS, SETTINGS, SMS_SENDER
from bot.channels.wechat import WECHAT_API
from bot.staff.auth import FORM, console, error_page, form_value, redirect, staff_page
from bot.staff.pages import _local, _local_day, _tx, tier_name
from bot.staff.render import text
from models import inbox
from models.errors import DomainError
from models.inbox import Thread
from models.phone import mask_phone
from models.staff_auth import SignedIn
from models.stores import assistant_codes
from models.strict import row_id
from models.types import utcnow
from scheduler.send import inbox_reply
from scheduler.send.transports import mask_address

routes = web.RouteTableDef()
FILTERS = (*inbox.STATUSES, "all")


def _who(request: web.Request, thread: Thread) -> dict[str, Any]:
    c, m = thread.conversation, thread.member
    if m is None:
        return {"name": None, "address": mask_address(c.address), "member_id": None}
    return {"name": m.name, "address": mask_phone(m.phone), "member_id": m.id}


def _row(request: web.Request, thread: Thread) -> dict[str, Any]:
    c = thread.conversation
    last = thread.messages[-1] if thread.messages else None
    return {
        "id": c.id,
        "status": c.status,
        "channel": c.channel,
        "updated": _local(request, c.updated_at),
        "last": last.text if last is not None else "",
        **_who(request, thread),
    }


@routes.get("/staff/inbox")
@console()
async def inbox_page(request: web.Request, staff: SignedIn) -> web.Response:
    shown = request.query.get("status", inbox.OPEN)
    if shown not in FILTERS:
        shown = inbox.OPEN
    async with _tx(request) as session:
        found = await inbox.threads(
            session, scope=staff.scope, status=None if shown == "all" else shown
        )
    rows = [_row(request, t) for t in found]
    notice = text(staff.locale, "inbox.closed_notice") if request.query.get("closed") else None
    return staff_page(
        request, staff, "inbox.html", rows=rows, shown=shown, filters=FILTERS, notice=notice
    )


async def _thread_page(
    request: web.Request,
    staff: SignedIn,
    conversation_id: int,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    draft: str = "",
) -> web.Response:
    locale = staff.locale
    async with _tx(request) as session:
        thread = await inbox.thread_for(session, scope=staff.scope, conversation_id=conversation_id)
        codes = await assistant_codes(
            session, assistant_ids={m.assistant_id for m in thread.messages}
        )
    m = thread.member
    facts = None
    if m is not None:
        facts = {
            "tier": tier_name(request, m.tier, locale),
            "points": m.points,
            "last_purchase": _local_day(request, m.last_purchase_at),
            "stopped": m.stopped,
            "locale": m.locale,
        }
    messages = [
        {
            "author": msg.author,
            "by": codes.get(msg.assistant_id) if msg.assistant_id else None,
            "text": msg.text,
            "at": _local(request, msg.at),
            "channel": msg.channel,
            "status": msg.status,
            "error": msg.error,
        }
        for msg in thread.messages
    ]
    return staff_page(
        request,
        staff,
        "conversation.html",
        status=status,
        error=error,
        notice=notice,
        c={
            "id": thread.conversation.id,
            "status": thread.conversation.status,
            "channel": thread.conversation.channel,
            **_who(request, thread),
        },  # fmt: skip
        facts=facts,
        messages=messages,
        draft=draft,
    )


def _conversation_id(request: web.Request) -> int | None:
    return row_id(request.match_info["conversation_id"])


async def _guarded(request: web.Request, staff: SignedIn, call) -> web.Response:
    """Run `call(conversation_id)`; an unknown id is the 404 page, another's the 403."""
    conversation_id = _conversation_id(request)
    if conversation_id is None:
        return error_page(request, staff, 404, "error.not_found")
    try:
        return await call(conversation_id)
    except inbox.NotYours:
        return error_page(request, staff, 403, "inbox.not_yours")
    except DomainError as exc:
        if exc.status == 404:
            return error_page(request, staff, 404, "error.not_found")
        raise


@routes.get("/staff/inbox/{conversation_id}")
@console()
async def conversation_page(request: web.Request, staff: SignedIn) -> web.Response:
    sent = request.query.get("sent")
    notice = text(staff.locale, f"inbox.sent_{sent}") if sent in ("wechat", "sms") else None
    error = text(staff.locale, "inbox.send_failed") if sent == "failed" else None
    return await _guarded(
        request,
        staff,
        lambda cid: _thread_page(request, staff, cid, notice=notice, error=error),
    )


@routes.post("/staff/inbox/{conversation_id}/reply")
@console()
async def reply(request: web.Request, staff: SignedIn) -> web.Response:
    draft = form_value(request[FORM], "text")

    async def send(conversation_id: int) -> web.Response:
        try:
            delivery = await inbox_reply.answer(
                request.app[SESSIONS],
                scope=staff.scope,
                conversation_id=conversation_id,
                text=draft,
                now=utcnow(),
                settings=request.app[SETTINGS],
                wechat=request.app.get(WECHAT_API),
                sms=request.app[SMS_SENDER],
            )
        except inbox_reply.NoChannel:
            message = text(staff.locale, "inbox.no_channel")
            return await _thread_page(
                request, staff, conversation_id, status=409, error=message, draft=draft
            )
        except DomainError as exc:
            if exc.status in (403, 404):  # not yours / no such conversation: `_guarded`
                raise
            message = text(staff.locale, "error.bad_input", reason=exc.message)
            return await _thread_page(
                request, staff, conversation_id, status=exc.status, error=message, draft=draft
            )
        sent = delivery.channel if delivery.status == inbox.SENT else "failed"
        return redirect(f"/staff/inbox/{conversation_id}?sent={sent}")

    return await _guarded(request, staff, send)


@routes.post("/staff/inbox/{conversation_id}/close")
@console()
async def close(request: web.Request, staff: SignedIn) -> web.Response:
    async def shut(conversation_id: int) -> web.Response:
        await inbox_reply.close(
            request.app[SESSIONS], scope=staff.scope, conversation_id=conversation_id,
            now=utcnow(),
        )  # fmt: skip
        return redirect("/staff/inbox?closed=1")

    return await _guarded(request, staff, shut)
