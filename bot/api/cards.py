"""Card applications (`/api/card-applications`, its status steps) and
`GET /api/eligible-members`."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from aiohttp import web
from pydantic import Field

from bot.api.common import Body, Code, context, member_or_404, operator, read_object, tx
from bot.api.openapi import CREATED, ROW_ID, describe
from bot.errors import json_response
from models import card_reads, cards, member_cards, members, stores
from models.errors import InvalidInput, NotFound
from models.strict import row_id
from models.tiers.upgrade import eligible_not_applied
from models.types import utcnow

routes = web.RouteTableDef()


async def _application_views(session, apps, tz) -> list[dict]:
    phones = await members.phones(session, member_ids={a.member_id for a in apps})
    codes = await stores.store_codes(session, store_ids={a.store_id for a in apps})
    return [
        {
            "id": a.id,
            "member": phones.get(a.member_id),
            "tier": a.tier,
            "status": a.status,
            "store": codes.get(a.store_id),
            "pickup_date": a.pickup_date.isoformat() if a.pickup_date else None,
            "mail_address": a.mail_address,
            "updated_at": a.updated_at.astimezone(tz).isoformat(),
        }
        for a in apps
    ]


async def _store_filter(session, request: web.Request) -> int | None:
    code = request.query.get("store")
    if code is None:
        return None
    store = await stores.get_store(session, code=code)
    if store is None:
        raise InvalidInput(f"unknown store {code!r}", "store")
    return store.id


@routes.get("/api/card-applications")
@describe(
    "Card applications",
    returns="array",
    query={"status": "application status", "store": "store code"},
)
@operator
async def get_card_applications(request: web.Request) -> web.Response:
    _rules, tz, _today = context(request)
    async with tx(request) as session:
        store_id = await _store_filter(session, request)
        apps = await card_reads.list_applications(
            session, status=request.query.get("status"), store_id=store_id
        )
        body = await _application_views(session, apps, tz)
    return json_response(body)


class ApplicationIn(Body):
    member: str
    tier: Code


@routes.post("/api/card-applications")
@describe("Apply for a card", body=ApplicationIn, ok=CREATED)
@operator
async def post_card_application(request: web.Request) -> web.Response:
    data = ApplicationIn.model_validate(await read_object(request))
    rules, tz, _today = context(request)
    async with tx(request) as session:
        member = await member_or_404(session, data.member, "member")
        app, created = await member_cards.apply_for_card(
            session, rules=rules, member=member, tier=data.tier, actor="api", now=utcnow()
        )
        (body,) = await _application_views(session, [app], tz)
    return json_response(body, status=201 if created else 200)


class StatusIn(Body):
    status: Annotated[str, Field(min_length=1, max_length=20)]
    note: Annotated[str, Field(max_length=300)] = ""
    pickup_date: date | None = None
    mail_address: Annotated[str, Field(min_length=1, max_length=300)] | None = None


@routes.post("/api/card-applications/{id}/status")
@describe("Move an application to a status", body=StatusIn, path={"id": ROW_ID})
@operator
async def post_card_status(request: web.Request) -> web.Response:
    application_id = row_id(request.match_info["id"])
    if application_id is None:
        raise NotFound("no such card application", "id")
    data = StatusIn.model_validate(await read_object(request))
    rules, tz, _today = context(request)
    async with tx(request) as session:
        app = await cards.advance(
            session,
            rules=rules,
            application_id=application_id,
            to_status=data.status,
            actor="api",
            now=utcnow(),
            note=data.note,
            pickup_date=data.pickup_date,
            mail_address=data.mail_address,
            tz=tz,
        )
        (body,) = await _application_views(session, [app], tz)
    return json_response(body)


@routes.get("/api/eligible-members")
@describe(
    "Members eligible for a higher tier who have not applied",
    returns="array",
    query={"store": "store code"},
)
@operator
async def get_eligible_members(request: web.Request) -> web.Response:
    rules, _tz, _today = context(request)
    async with tx(request) as session:
        store_id = await _store_filter(session, request)
        found = await eligible_not_applied(session, rules=rules, store_id=store_id)
        codes = await stores.store_codes(session, store_ids={m.store_id for m in found})
        body = [
            {
                "member": m.phone,
                "name": m.name,
                "tier": m.tier,
                "eligible_tier": m.eligible_tier,
                "eligible_since": m.eligible_since.isoformat() if m.eligible_since else None,
                "store": codes.get(m.store_id),
            }
            for m in found
        ]
    return json_response(body)
