"""`POST /api/members`, `GET /api/members/{phone}` (the member view,
`bot.api.views`), `POST /api/members/{phone}/stop|resume`, and the member's data rights:
`GET /api/members/{phone}/export` (everything held, `models.member_data`) and
`DELETE /api/members/{phone}` (erasure; 200 with `"erased": false` when no member has
the phone, so a repeated erasure answers the same way)."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from bot.api.common import Body, context, member_or_404, operator, read_object, tx
from bot.api.openapi import CREATED, describe
from bot.api.views import member_view
from bot.errors import json_response
from models import consent, member_data, members
from models.member_input import MemberIn
from models.phone import normalise_phone
from models.types import utcnow

routes = web.RouteTableDef()


@routes.post("/api/members")
@describe("Create or update a member: the member view", body=MemberIn, ok=CREATED)
@operator
async def post_member(request: web.Request) -> web.Response:
    data = MemberIn.model_validate(await read_object(request))
    rules, tz, today = context(request)
    async with tx(request) as session:
        member, created = await members.upsert_member(
            session, rules=rules, tz=tz, data=data, today=today
        )
        body = await member_view(session, rules=rules, tz=tz, member=member, today=today)
    return json_response(body, status=201 if created else 200)


@routes.get("/api/members/{phone}")
@describe("The member view: points, tier, vouchers, consent, card applications")
@operator
async def get_member(request: web.Request) -> web.Response:
    rules, tz, today = context(request)
    async with tx(request) as session:
        member = await member_or_404(session, request.match_info["phone"], "phone")
        body = await member_view(session, rules=rules, tz=tz, member=member, today=today)
    return json_response(body)


class ConsentIn(Body):
    note: Annotated[str, Field(max_length=150)] = ""


async def _consent(request: web.Request, change) -> web.Response:
    data = ConsentIn.model_validate(await read_object(request, optional=True))
    source = f"operator: {data.note}" if data.note else "operator"
    async with tx(request) as session:
        member = await member_or_404(session, request.match_info["phone"], "phone")
        changed = await change(session, member=member, channel="staff", at=utcnow(), source=source)
        body = {"phone": member.phone, "stopped": member.stopped, "changed": changed}
    return json_response(body)


@routes.post("/api/members/{phone}/stop")
@describe("Stop proactive messages", body=ConsentIn, body_required=False)
@operator
async def post_stop(request: web.Request) -> web.Response:
    return await _consent(request, consent.stop)


@routes.post("/api/members/{phone}/resume")
@describe("Resume proactive messages", body=ConsentIn, body_required=False)
@operator
async def post_resume(request: web.Request) -> web.Response:
    return await _consent(request, consent.resume)


@routes.get("/api/members/{phone}/export")
@describe("Everything held about the member")
@operator
async def get_export(request: web.Request) -> web.Response:
    async with tx(request) as session:
        member = await member_or_404(session, request.match_info["phone"], "phone")
        document = await member_data.export_member(session, member)
    return json_response(document)


@routes.delete("/api/members/{phone}")
@describe("Erase the member's personal data (again: `erased` false)")
@operator
async def delete_member(request: web.Request) -> web.Response:
    phone = normalise_phone(request.match_info["phone"])
    async with tx(request) as session:
        member = await members.get_member_by_phone(session, phone=phone)
        if member is None:
            return json_response({"erased": False, "reason": "no member has this phone"})
        counts = await member_data.erase_member(session, member, now=utcnow())
    return json_response({"erased": True, "member_id": member.id, "changed": counts})
