"""`POST /api/members`, `GET /api/members/{phone}` (the member view,
`bot.api.views`) and `POST /api/members/{phone}/stop|resume`."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from bot.api.common import Body, context, member_or_404, operator, read_object, tx
from bot.api.views import member_view
from bot.errors import json_response
from models import consent, members
from models.member_input import MemberIn
from models.types import utcnow

routes = web.RouteTableDef()


@routes.post("/api/members")
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
@operator
async def post_stop(request: web.Request) -> web.Response:
    return await _consent(request, consent.stop)


@routes.post("/api/members/{phone}/resume")
@operator
async def post_resume(request: web.Request) -> web.Response:
    return await _consent(request, consent.resume)
