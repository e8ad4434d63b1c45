"""The card pickup tracker page of the staff console (DOMAIN.md §5): applications
grouped by state, a button for each step allowed next (`models.cards`), and an
alert for cards missed twice with no address to mail them to (`agenda.unmailable_cards`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.appkeys import SETTINGS
from bot.staff import agenda
from bot.staff.auth import FORM, console, error_page, form_value, redirect, staff_page
from bot.staff.pages import (
    _local,
    _optional_day,
    _today,
    _tx,
    scope_of,
    tier_name,
)
from bot.staff.render import text
from bot.staff.today import unmailable_rows
from models import cards, staff_queries
from models.errors import Conflict
from models.phone import mask_phone
from models.staff_auth import SignedIn
from models.strict import row_id
from models.types import utcnow

routes = web.RouteTableDef()


async def _cards_page(
    request: web.Request,
    staff: SignedIn,
    *,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> web.Response:
    locale = staff.locale
    async with _tx(request) as session:
        found = await staff_queries.applications(session, scope=scope_of(staff))
        unmailable = await agenda.unmailable_cards(
            session, settings=request.app[SETTINGS], scope=scope_of(staff), today=_today(request)
        )
    stuck = {c.application.id for c in unmailable}
    groups: dict[str, list[dict[str, Any]]] = {s: [] for s in cards.STATUSES}
    for app, member in found:
        groups[app.status].append(
            {
                "id": app.id,
                "member_id": member.id,
                "member_name": member.name,
                "phone_masked": mask_phone(member.phone),
                "tier": tier_name(request, app.tier, locale),
                "updated": _local(request, app.updated_at),
                "pickup_date": app.pickup_date.isoformat() if app.pickup_date else None,
                "steps": [s for s in cards.STATUSES if cards.can_step(app.status, s)],
                "unmailable": app.id in stuck,
            }
        )
    return staff_page(
        request,
        staff,
        "cards.html",
        status=status,
        notice=notice,
        error=error,
        groups=[{"status": s, "rows": rows} for s, rows in groups.items() if rows],
        unmailable=unmailable_rows(request, unmailable, locale),
    )


@routes.get("/staff/cards")
@console()
async def cards_page(request: web.Request, staff: SignedIn) -> web.Response:
    notice = None
    done = request.query.get("done", "")
    if done in cards.STATUSES:
        notice = text(
            staff.locale,
            "cards.advanced",
            status=text(staff.locale, f"status.{done}"),
            actor=f"assistant:{staff.code}",
        )
    return await _cards_page(request, staff, notice=notice)


@routes.post("/staff/cards/{application_id}/advance")
@console()
async def advance_card(request: web.Request, staff: SignedIn) -> web.Response:
    to_status = form_value(request[FORM], "status")
    pickup_date = _optional_day(form_value(request[FORM], "pickup_date"), "pickup_date")
    application_id = row_id(request.match_info["application_id"])
    settings = request.app[SETTINGS]
    locale = staff.locale
    try:
        async with _tx(request) as session:
            app = (
                await staff_queries.visible_application(
                    session, scope=scope_of(staff), application_id=application_id
                )
                if application_id is not None
                else None
            )
            if app is None:
                return error_page(request, staff, 404, "error.not_found")
            current = app.status
            await cards.advance(
                session,
                rules=settings.loyalty,
                application_id=app.id,
                to_status=cards.check_status(to_status),
                actor=f"assistant:{staff.code}",
                now=utcnow(),
                tz=settings.brand.tz,
                pickup_date=pickup_date,
            )
    except Conflict:
        message = text(
            locale,
            "cards.illegal",
            from_status=text(locale, f"status.{current}"),
            to_status=text(locale, f"status.{to_status}"),
        )
        return await _cards_page(request, staff, status=409, error=message)
    return redirect(f"/staff/cards?done={quote(to_status)}#application-{application_id}")
