"""`POST /api/purchases` and `POST /api/visits`."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from bot.api.common import Body, Code, context, member_or_404, operator, read_object, tx, when
from bot.api.openapi import CREATED, describe
from bot.errors import json_response
from models import members, stores
from models.errors import InvalidInput
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.purchases.visits import record_visit

routes = web.RouteTableDef()


@routes.post("/api/purchases")
@describe("Record a purchase (the same `receipt_no` again: 200)", body=PurchaseIn, ok=CREATED)
@operator
async def post_purchase(request: web.Request) -> web.Response:
    data = PurchaseIn.model_validate(await read_object(request))
    rules, tz, _today = context(request)
    async with tx(request) as session:
        purchase, created = await record_purchase(session, rules=rules, tz=tz, data=data)
        member = await members.get_member(session, member_id=purchase.member_id)
        store = await stores.store_codes(session, store_ids={purchase.store_id})
        staff = await stores.assistant_codes(session, assistant_ids={purchase.assistant_id})
        body = {
            "receipt_no": purchase.receipt_no,
            "member": member.phone,
            "store": store.get(purchase.store_id),
            "assistant": staff.get(purchase.assistant_id),
            "amount": f"{purchase.amount:.2f}",
            "at": purchase.at.astimezone(tz).isoformat(),
            "points": purchase.points,
            "balance": member.points,
        }
    return json_response(body, status=201 if created else 200)


class VisitIn(Body):
    member: str
    assistant: Code
    at: Annotated[str, Field(max_length=40)] | None = None
    """When the member came (ISO 8601); default now."""


@routes.post("/api/visits")
@describe("Record a visit", body=VisitIn, ok={201: "points posted", 200: "nothing posted"})
@operator
async def post_visit(request: web.Request) -> web.Response:
    data = VisitIn.model_validate(await read_object(request))
    rules, tz, _today = context(request)
    at = when(data.at, tz, "at")
    async with tx(request) as session:
        member = await member_or_404(session, data.member, "member")
        assistant = await stores.get_assistant(session, code=data.assistant)
        if assistant is None:
            raise InvalidInput(f"unknown assistant {data.assistant!r}", "assistant")
        entry = await record_visit(
            session, rules=rules, tz=tz, member_id=member.id, assistant_id=assistant.id, at=at
        )
        posted = entry is not None
        body = {"member": member.phone, "posted": posted, "points": member.points}
    return json_response(body, status=201 if posted else 200)
