"""The operator API: the `/api/*` routes of CONTRACT.md that take an API key.

Every handler is wrapped by `operator`, which checks `Authorization: Bearer <key>`
against `settings.api.keys` before anything is read or written (401 +
`WWW-Authenticate: Bearer` otherwise). Bad input and domain errors are raised;
`bot.errors.error_middleware` answers them as `{"error", "field"}` with their 4xx
status, logging one INFO line per error (route pattern only: no phone numbers).

A handler parses the body (`read_object`, then a pydantic model), makes one domain
call inside one transaction (`models.db.transaction`: a domain error rolls all of it
back) and serialises the result. No SQL here.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from bot import greetings_api
from bot.api_common import bearer_token, read_object
from bot.appkeys import LOYALTY, SESSIONS, SETTINGS
from bot.errors import Unauthorized, json_response
from models import cards, consent, members, stores
from models.clock import brand_today, parse_aware
from models.db import transaction
from models.errors import InvalidInput, NotFound
from models.members import MemberIn
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.purchases.visits import record_visit
from models.staff_auth import hash_password
from models.strict import row_id
from models.tiers.upgrade import eligible_not_applied
from models.types import utcnow

routes = web.RouteTableDef()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^\S+$")]


def setup(app: web.Application) -> None:
    """Add the operator routes and the assistant-token route (POST /api/greetings).
    Needs `app[SETTINGS]` set."""
    app[LOYALTY] = app[SETTINGS].loyalty
    app.router.add_routes(routes)
    greetings_api.setup(app)


# --------------------------------------------------------------------------- plumbing


def _authorised(request: web.Request) -> bool:
    given = bearer_token(request)
    if not given:
        return False
    token = given.encode("utf-8", "surrogateescape")
    match = False
    for key in request.app[SETTINGS].api.keys:  # compare with every key: no early exit
        match |= hmac.compare_digest(token, key.encode("utf-8"))
    return match


def operator(handler: Handler) -> Handler:
    """API-key auth for one operator route (checked before the body is read)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not _authorised(request):
            raise Unauthorized("missing or wrong API key", "authorization")
        return await handler(request)

    return wrapped


def _context(request: web.Request):
    settings = request.app[SETTINGS]
    tz = settings.brand.tz
    return request.app[LOYALTY], tz, brand_today(tz)


def _tx(request: web.Request):
    return transaction(request.app[SESSIONS])


def _when(value: str | None, tz, field: str) -> datetime:
    """An ISO 8601 time (brand-local when it has no offset), not in the future; None → now."""
    now = utcnow()
    if value is None:
        return now
    try:
        at = parse_aware(value, tz)
        if not (datetime(2000, 1, 1, tzinfo=UTC) <= at <= now + timedelta(days=1)):
            raise InvalidInput("the time must lie between 2000 and now", field)
    except (ValueError, OverflowError):
        raise InvalidInput("expected an ISO 8601 date and time", field) from None
    return at


async def _member_or_404(session, phone: str, field: str) -> members.Member:
    member = await members.get_member_by_phone(session, phone=phone)
    if member is None:
        raise NotFound("no member with this phone", field)
    return member


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --------------------------------------------------------------------------- stores and staff


class StoreIn(_Body):
    code: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    city: Annotated[str, Field(max_length=100)] = ""


class AssistantIn(_Body):
    code: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    store: Code
    rotate_token: StrictBool = False
    role: Literal["assistant", "manager"] | None = None
    """Staff console role; unchanged when absent (new assistants: "assistant")."""
    password: Annotated[str, Field(min_length=8, max_length=200)] | None = None
    """Staff console password (stored as a scrypt hash); unchanged when absent."""


@routes.post("/api/stores")
@operator
async def post_store(request: web.Request) -> web.Response:
    data = StoreIn.model_validate(await read_object(request))
    async with _tx(request) as session:
        store, created = await stores.upsert_store(
            session, code=data.code, name=data.name, city=data.city
        )
        body = {"code": store.code, "name": store.name, "city": store.city}
    return json_response(body, status=201 if created else 200)


@routes.post("/api/assistants")
@operator
async def post_assistant(request: web.Request) -> web.Response:
    data = AssistantIn.model_validate(await read_object(request))
    async with _tx(request) as session:
        assistant, created, token = await stores.create_or_update_assistant(
            session,
            code=data.code,
            name=data.name,
            store_code=data.store,
            rotate_token=data.rotate_token,
            role=data.role,
            password_hash=hash_password(data.password) if data.password is not None else None,
        )
        body: dict[str, Any] = {
            "code": assistant.code,
            "name": assistant.name,
            "store": data.store,
            "role": assistant.role,
        }
    if token is not None:
        body["token"] = token
    return json_response(body, status=201 if created else 200)


# --------------------------------------------------------------------------- members


@routes.post("/api/members")
@operator
async def post_member(request: web.Request) -> web.Response:
    data = MemberIn.model_validate(await read_object(request))
    rules, tz, today = _context(request)
    async with _tx(request) as session:
        member, created = await members.upsert_member(
            session, rules=rules, tz=tz, data=data, today=today
        )
        body = await members.member_view(session, rules=rules, tz=tz, member=member, today=today)
    return json_response(body, status=201 if created else 200)


@routes.get("/api/members/{phone}")
@operator
async def get_member(request: web.Request) -> web.Response:
    rules, tz, today = _context(request)
    async with _tx(request) as session:
        member = await _member_or_404(session, request.match_info["phone"], "phone")
        body = await members.member_view(session, rules=rules, tz=tz, member=member, today=today)
    return json_response(body)


class ConsentIn(_Body):
    note: Annotated[str, Field(max_length=150)] = ""


async def _consent(request: web.Request, change) -> web.Response:
    data = ConsentIn.model_validate(await read_object(request, optional=True))
    source = f"operator: {data.note}" if data.note else "operator"
    async with _tx(request) as session:
        member = await _member_or_404(session, request.match_info["phone"], "phone")
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


# --------------------------------------------------------------------------- purchases and visits


@routes.post("/api/purchases")
@operator
async def post_purchase(request: web.Request) -> web.Response:
    data = PurchaseIn.model_validate(await read_object(request))
    rules, tz, _today = _context(request)
    async with _tx(request) as session:
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


class VisitIn(_Body):
    member: str
    assistant: Code
    at: Annotated[str, Field(max_length=40)] | None = None
    """When the member came (ISO 8601); default now."""


@routes.post("/api/visits")
@operator
async def post_visit(request: web.Request) -> web.Response:
    data = VisitIn.model_validate(await read_object(request))
    rules, tz, _today = _context(request)
    at = _when(data.at, tz, "at")
    async with _tx(request) as session:
        member = await _member_or_404(session, data.member, "member")
        assistant = await stores.get_assistant(session, code=data.assistant)
        if assistant is None:
            raise InvalidInput(f"unknown assistant {data.assistant!r}", "assistant")
        entry = await record_visit(
            session, rules=rules, tz=tz, member_id=member.id, assistant_id=assistant.id, at=at
        )
        posted = entry is not None
        body = {"member": member.phone, "posted": posted, "points": member.points}
    return json_response(body, status=201 if posted else 200)


# --------------------------------------------------------------------------- card applications


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
@operator
async def get_card_applications(request: web.Request) -> web.Response:
    _rules, tz, _today = _context(request)
    async with _tx(request) as session:
        store_id = await _store_filter(session, request)
        apps = await cards.list_applications(
            session, status=request.query.get("status"), store_id=store_id
        )
        body = await _application_views(session, apps, tz)
    return json_response(body)


class ApplicationIn(_Body):
    member: str
    tier: Code


@routes.post("/api/card-applications")
@operator
async def post_card_application(request: web.Request) -> web.Response:
    data = ApplicationIn.model_validate(await read_object(request))
    rules, tz, _today = _context(request)
    async with _tx(request) as session:
        member = await _member_or_404(session, data.member, "member")
        app, created = await members.apply_for_card(
            session, rules=rules, member=member, tier=data.tier, actor="api", now=utcnow()
        )
        (body,) = await _application_views(session, [app], tz)
    return json_response(body, status=201 if created else 200)


class StatusIn(_Body):
    status: Annotated[str, Field(min_length=1, max_length=20)]
    note: Annotated[str, Field(max_length=300)] = ""
    pickup_date: date | None = None
    mail_address: Annotated[str, Field(min_length=1, max_length=300)] | None = None


@routes.post("/api/card-applications/{id}/status")
@operator
async def post_card_status(request: web.Request) -> web.Response:
    application_id = row_id(request.match_info["id"])
    if application_id is None:
        raise NotFound("no such card application", "id")
    data = StatusIn.model_validate(await read_object(request))
    rules, tz, _today = _context(request)
    async with _tx(request) as session:
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
@operator
async def get_eligible_members(request: web.Request) -> web.Response:
    rules, _tz, _today = _context(request)
    async with _tx(request) as session:
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
