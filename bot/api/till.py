"""The till's routes: `GET /api/vouchers/{code}`, `POST /api/vouchers/{code}/use|void`,
`POST /api/returns` and `POST /api/points/adjustments` (CONTRACT.md; the rules are in
`models.voucher_till`, `models.returns` and `models.purchases.visits.adjust_points`).

Bodies may name who acts (`by`, e.g. the cashier); the history records it as
``api:<by>`` (``api`` without)."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field, StrictInt

from bot.api.common import Body, Code, context, member_or_404, operator, read_object, tx, when
from bot.api.openapi import CREATED, describe
from bot.errors import json_response
from models import voucher_till
from models.errors import InvalidInput
from models.phone import mask_phone
from models.purchases.visits import adjust_points
from models.returns import ReturnIn, record_return
from models.tables.ledger import Voucher
from models.tables.members import Member
from models.types import utcnow

routes = web.RouteTableDef()
By = Annotated[str, Field(max_length=60)]


def _actor(by: str) -> str:
    return f"api:{by}" if by else "api"


async def voucher_json(session, voucher: Voucher, today) -> dict:
    """A voucher as the till sees it: the member view's fields plus its member (masked),
    when it was issued and used, and its history."""
    seen = await voucher_till.voucher_history(session, voucher=voucher)
    return {
        "code": voucher.code,
        "value": f"{voucher.value:.2f}",
        "status": voucher_till.state(voucher, today),
        "expires": voucher.expires_on.isoformat(),
        "member": mask_phone(seen.phone) if seen.phone else None,
        "reward": voucher.reward_code,
        "issued_at": voucher.issued_at.isoformat(),
        "used_at": voucher.used_at.isoformat() if voucher.used_at else None,
        "events": [
            {
                "action": e.action,
                "at": e.at.isoformat(),
                "store": store,
                "receipt_no": e.receipt_no,
                "by": e.actor,
                "reason": e.reason,
            }
            for e, store in seen.events
        ],
    }


@routes.get("/api/vouchers/{code}")
@describe("A voucher as the till sees it")
@operator
async def get_voucher(request: web.Request) -> web.Response:
    _rules, _tz, today = context(request)
    async with tx(request) as session:
        voucher = await voucher_till.find_voucher(session, code=request.match_info["code"])
        body = await voucher_json(session, voucher, today)
    return json_response(body)


class UseIn(Body):
    store: Code
    receipt_no: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    by: By = ""


@routes.post("/api/vouchers/{code}/use")
@describe("Use a voucher at a store", body=UseIn)
@operator
async def post_use(request: web.Request) -> web.Response:
    data = UseIn.model_validate(await read_object(request))
    _rules, tz, today = context(request)
    async with tx(request) as session:
        voucher, _used_now = await voucher_till.use_voucher(
            session,
            tz=tz,
            code=request.match_info["code"],
            store_code=data.store,
            receipt_no=data.receipt_no,
            actor=_actor(data.by),
            now=utcnow(),
        )
        body = await voucher_json(session, voucher, today)
    return json_response(body)


class VoidIn(Body):
    reason: Annotated[str, Field(min_length=1, max_length=150)]
    by: By = ""


@routes.post("/api/vouchers/{code}/void")
@describe("Void a voucher", body=VoidIn)
@operator
async def post_void(request: web.Request) -> web.Response:
    data = VoidIn.model_validate(await read_object(request))
    rules, tz, today = context(request)
    async with tx(request) as session:
        voucher = await voucher_till.void_voucher(
            session,
            rules=rules,
            tz=tz,
            code=request.match_info["code"],
            reason=data.reason,
            actor=_actor(data.by),
            now=utcnow(),
        )
        body = await voucher_json(session, voucher, today)
    return json_response(body)


@routes.post("/api/returns")
@describe("Record a return (the same `return_no` again: 200)", body=ReturnIn, ok=CREATED)
@operator
async def post_return(request: web.Request) -> web.Response:
    data = ReturnIn.model_validate(await read_object(request))
    rules, tz, _today = context(request)
    async with tx(request) as session:
        ret, created = await record_return(session, rules=rules, tz=tz, data=data)
        member = await session.get(Member, ret.member_id)
        body = {
            "return_no": ret.return_no,
            "receipt_no": data.receipt_no,
            "member": member.phone,
            "amount": f"{ret.amount:.2f}",
            "points": -ret.points,
            "referral_points": -ret.referral_points,
            "balance": member.points,
            "cumulative_spend": f"{member.cumulative_spend:.2f}",
            "tier": member.tier,
        }
    return json_response(body, status=201 if created else 200)


class AdjustmentIn(Body):
    phone: str
    points: StrictInt = Field(ge=-1_000_000, le=1_000_000)
    reason: Annotated[str, Field(max_length=150)] = ""
    key: Annotated[str, Field(min_length=1, max_length=100)]
    by: By = ""
    at: Annotated[str, Field(max_length=40)] | None = None


@routes.post("/api/points/adjustments")
@describe("Adjust points (the same `key` again: 200)", body=AdjustmentIn, ok=CREATED)
@operator
async def post_adjustment(request: web.Request) -> web.Response:
    data = AdjustmentIn.model_validate(await read_object(request))
    if not data.reason:
        raise InvalidInput("an adjustment needs a reason", "reason")
    rules, tz, _today = context(request)
    at = when(data.at, tz, "at")
    async with tx(request) as session:
        member = await member_or_404(session, data.phone, "phone")
        entry, created = await adjust_points(
            session,
            rules=rules,
            tz=tz,
            member_id=member.id,
            delta=data.points,
            key=data.key,
            at=at,
            reason=data.reason,
            actor=_actor(data.by),
        )
        body = {
            "phone": member.phone,
            "points": entry.delta,
            "key": data.key,
            "note": entry.note,
            "balance_after": entry.balance_after,
            "balance": member.points,
        }
    return json_response(body, status=201 if created else 200)
