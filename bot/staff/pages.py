"""Staff console pages: sign-in/out, my members, the member page with the greeting
preview and send (today and next month: `today`; the card pickup tracker: `tracker`).

Each page is one `console`-wrapped handler: read the query or form, one domain call
(or a few reads) in one transaction, render. No SQL here (`models.staff_queries`).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.appkeys import SESSIONS, SETTINGS
from bot.edge import posted_form
from bot.staff.auth import (
    COOKIE,
    FORM,
    SignInAttempt,
    begin_sign_in,
    clear_session_cookie,
    console,
    default_locale,
    error_page,
    form_value,
    redirect,
    safe_next,
    set_session_cookie,
    staff_page,
)
from bot.staff.render import page, text
from bot.staff.till import till_context
from models import staff_auth, staff_lockout, staff_queries
from models.clock import brand_today
from models.db import transaction
from models.errors import DomainError, InvalidInput
from models.locale_format import local_name, pick_locale
from models.member_input import format_day
from models.phone import mask_phone
from models.staff_auth import SignedIn
from models.staff_queries import Scope
from models.stores import assistant_codes
from models.strict import row_id
from models.tables.members import Member
from models.types import utcnow
from scheduler import greetings
from scheduler.greeting_checks import OCCASIONS

routes = web.RouteTableDef()


def scope_of(staff: SignedIn) -> Scope:
    return staff.scope


def _tx(request: web.Request):
    return transaction(request.app[SESSIONS])


def _local(request: web.Request, at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(request.app[SETTINGS].brand.tz).strftime("%Y-%m-%d %H:%M")


def _local_day(request: web.Request, at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(request.app[SETTINGS].brand.tz).date().isoformat()


def tier_name(request: web.Request, code: str | None, locale: str) -> str:
    """The name of the tier `code` in the console's language (`local_name`)."""
    return local_name(request.app[SETTINGS].tiers.level(code), locale)


def _today(request: web.Request):
    return brand_today(request.app[SETTINGS].brand.tz)


def _optional_day(value: str, field: str) -> date | None:
    """An optional YYYY-MM-DD form field; anything else is InvalidInput (422)."""
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("expected a date (YYYY-MM-DD)", field) from None


# --------------------------------------------------------------------------- sign-in


def _sign_in_page(
    request: web.Request,
    *,
    locale: str,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    next_: str = "/staff/",
    code: str = "",
) -> web.Response:
    return page(
        "signin.html",
        locale=locale,
        brand=request.app[SETTINGS].brand.name,
        status=status,
        error=error,
        notice=notice,
        next=next_,
        code=code,
    )


@routes.get("/staff")
async def staff_root(_request: web.Request) -> web.Response:
    return redirect("/staff/")


@routes.get("/staff/signin")
async def sign_in_form(request: web.Request) -> web.Response:
    locale = pick_locale(request.query.get("lang"), default_locale(request))
    notice = text(locale, "signin.signed_out") if request.query.get("out") == "1" else None
    return _sign_in_page(
        request, locale=locale, notice=notice, next_=safe_next(request.query.get("next"))
    )


@routes.post("/staff/signin")
async def sign_in(request: web.Request) -> web.Response:
    form = posted_form(request)
    locale = pick_locale(form_value(form, "locale"), default_locale(request))
    next_ = safe_next(form_value(form, "next"))
    code = form_value(form, "code").strip()[:64]
    attempt = await begin_sign_in(request, code=code)
    if not isinstance(attempt, SignInAttempt):
        response = _sign_in_page(
            request,
            locale=locale,
            status=429,
            error=text(locale, "signin.limited", minutes=max(1, round(attempt / 60))),
            next_=next_,
            code=code,
        )
        response.headers["Retry-After"] = str(math.ceil(attempt))
        return response
    secret = form_value(form, "secret").strip()
    settings = request.app[SETTINGS]
    async with _tx(request) as session:
        assistant = await staff_auth.check_credentials(session, code=code, secret=secret)
        raw = None
        if assistant is not None:
            raw = await staff_auth.open_session(
                session,
                assistant=assistant,
                now=utcnow(),
                ttl=timedelta(hours=settings.staff.session_hours),
                locale=locale,
            )
            await staff_lockout.release(session, reserved=attempt.reserved)
    if raw is None:  # the reservation stays: it is this failure, for the address and code
        return _sign_in_page(
            request,
            locale=locale,
            status=401,
            error=text(locale, "signin.wrong"),
            next_=next_,
            code=code,
        )
    response = redirect(next_)
    set_session_cookie(request, response, raw)
    return response


@routes.post("/staff/signout")
@console()
async def sign_out(request: web.Request, _staff: SignedIn) -> web.Response:
    async with _tx(request) as session:
        await staff_auth.close_session(session, raw=request.cookies.get(COOKIE, ""))
    response = redirect("/staff/signin?out=1")
    clear_session_cookie(request, response)
    return response


@routes.post("/staff/locale")
@console()
async def switch_locale(request: web.Request, staff: SignedIn) -> web.Response:
    form = request[FORM]
    locale = pick_locale(form_value(form, "locale"), staff.locale)
    async with _tx(request) as session:
        await staff_auth.set_locale(session, session_id=staff.session_id, locale=locale)
    return redirect(safe_next(form_value(form, "next")))


# --------------------------------------------------------------------------- members


def member_row(request: web.Request, m: Member, locale: str) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "phone_masked": mask_phone(m.phone),
        "tier": tier_name(request, m.tier, locale),
        "points": m.points,
        "last_purchase": _local_day(request, m.last_purchase_at),
        "stopped": m.stopped,
        "preferred_contact": m.preferred_contact,
    }


@routes.get("/staff/")
@routes.post("/staff/")
@console()
async def members_page(request: web.Request, staff: SignedIn) -> web.Response:
    """The member list; the search is a POST so that no phone number ends up in a URL
    (access logs, browser history)."""
    q = form_value(request[FORM], "q").strip()[:50] if request.method == "POST" else ""
    async with _tx(request) as session:
        found = await staff_queries.list_members(session, scope=scope_of(staff), query=q)
    rows = [member_row(request, m, staff.locale) for m in found]
    return staff_page(request, staff, "members.html", q=q, rows=rows)


async def _member_context(
    request: web.Request, staff: SignedIn, session, member: Member
) -> dict[str, Any]:
    locale = staff.locale
    contacts = await staff_queries.contact_history(session, member_id=member.id)
    steps = await staff_queries.card_history(session, member_id=member.id)
    owner = await assistant_codes(session, assistant_ids={member.assistant_id})
    birthday = format_day(member.birthday_year, member.birthday_month, member.birthday_day)
    if birthday and member.birthday_calendar == "lunar":
        birthday = f"{birthday} ({text(locale, 'member.lunar')})"
    return {
        "m": {
            "id": member.id,
            "name": member.name,
            "phone": member.phone,
            "tier": tier_name(request, member.tier, locale),
            "points": member.points,
            "spend": f"{member.cumulative_spend:.2f}",
            "purchases": member.purchases_count,
            "last_purchase": _local(request, member.last_purchase_at),
            "birthday": birthday,
            "wedding": format_day(member.wedding_year, member.wedding_month, member.wedding_day),
            "joined": member.join_date.isoformat(),
            "preferred_contact": member.preferred_contact,
            "assistant": owner.get(member.assistant_id) if member.assistant_id else None,
            "stopped": member.stopped,
        },
        "contacts": [
            {
                "at": _local(request, h.send_after),
                "kind": h.kind,
                "status": h.status,
                "channel": h.channel,
                "reason": h.reason,
                "text": h.text,
            }
            for h in contacts
        ],
        "card_events": [
            {
                "at": _local(request, e.at),
                "tier": tier_name(request, a.tier, locale),
                "from_status": e.from_status,
                "to_status": e.to_status,
                "actor": e.actor,
            }
            for e, a in steps
        ],
        "occasions": OCCASIONS,
        **await till_context(request, session, member),
    }


async def _visible_member(request: web.Request, staff: SignedIn, session) -> Member | None:
    member_id = row_id(request.match_info["member_id"])
    if member_id is None:
        return None
    return await staff_queries.visible_member(session, scope=scope_of(staff), member_id=member_id)


@routes.get("/staff/members/{member_id}")
@console()
async def member_page(request: web.Request, staff: SignedIn) -> web.Response:
    async with _tx(request) as session:
        member = await _visible_member(request, staff, session)
        if member is None:
            return error_page(request, staff, 404, "error.not_found")
        context = await _member_context(request, staff, session, member)
    notice = None
    sent = request.query.get("sent")
    if sent in ("new", "again"):
        notice = text(staff.locale, "greeting.queued" if sent == "new" else "greeting.duplicate")
    elif request.query.get("adjusted"):
        notice = text(staff.locale, "points.adjusted")
    return staff_page(
        request,
        staff,
        "member.html",
        notice=notice,
        draft=None,
        form={"occasion": request.query.get("occasion", "birthday"), "note": ""},
        **context,
    )


@routes.post("/staff/members/{member_id}/greeting")
@console()
async def greeting(request: web.Request, staff: SignedIn) -> web.Response:
    """Preview (re-render the page with the exact text and the rule check) or send."""
    form = request[FORM]
    occasion = form_value(form, "occasion")
    note = form_value(form, "note")
    action = form_value(form, "action", "preview")
    settings = request.app[SETTINGS]
    args = {"settings": settings, "assistant_id": staff.assistant_id, "occasion": occasion,
            "note": note}  # fmt: skip
    error: str | None = None
    status = 200
    draft = None
    async with _tx(request) as session:
        member = await _visible_member(request, staff, session)
        if member is None:
            return error_page(request, staff, 404, "error.not_found")
        member_id = member.id
    if action == "send":
        try:
            async with _tx(request) as session:
                _message, created = await greetings.queue_greeting(
                    session, member_id=member_id, now=utcnow(), **args
                )
            sent = "new" if created else "again"
            return redirect(f"/staff/members/{member_id}?sent={sent}")
        except DomainError as exc:
            error = text(staff.locale, "greeting.refused", reason=exc.message)
            status = exc.status
    async with _tx(request) as session:
        member = await _visible_member(request, staff, session)
        if member is None:
            return error_page(request, staff, 404, "error.not_found")
        try:
            d = await greetings.draft_greeting(session, member_id=member_id, now=utcnow(), **args)
            draft = {
                "text": d.text,
                "channel": d.channel,
                "send_after": _local(request, d.send_after),
                "violation": d.violation,
                "suppressed_reason": d.suppressed_reason,
            }
        except DomainError as exc:
            if error is None:
                error = text(staff.locale, "greeting.refused", reason=exc.message)
                status = exc.status
        context = await _member_context(request, staff, session, member)
    return staff_page(
        request,
        staff,
        "member.html",
        status=status,
        error=error,
        draft=draft,
        form={"occasion": occasion, "note": note},
        **context,
    )
