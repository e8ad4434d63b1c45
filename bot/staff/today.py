"""The staff console's "today and next month" page (`agenda`): birthdays, the day's
care follow-ups with their outbox state, dormant members, and the alert of cards
missed twice with no address to mail them to."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.appkeys import SETTINGS
from bot.staff import agenda as agenda_mod
from bot.staff.auth import console, staff_page
from bot.staff.pages import _local_day, _today, _tx, scope_of, tier_name
from models.phone import mask_phone
from models.staff_auth import SignedIn
from models.tables.members import Member

routes = web.RouteTableDef()


def unmailable_rows(
    request: web.Request, cards: list[agenda_mod.UnmailableCard], locale: str
) -> list[dict[str, Any]]:
    """The alert of cards missed twice with no address (`agenda.unmailable_cards`)."""
    return [
        {
            "id": c.application.id,
            "member_id": c.member.id,
            "member_name": c.member.name,
            "phone_masked": mask_phone(c.member.phone),
            "tier": tier_name(request, c.application.tier, locale),
            "pickup_date": c.application.pickup_date.isoformat()
            if c.application.pickup_date
            else None,
            "notified_again_on": c.notified_again_on.isoformat() if c.notified_again_on else None,
        }
        for c in cards
    ]


@routes.get("/staff/today")
@console()
async def today_page(request: web.Request, staff: SignedIn) -> web.Response:
    settings = request.app[SETTINGS]
    today = _today(request)
    async with _tx(request) as session:
        a = await agenda_mod.agenda(session, settings=settings, scope=scope_of(staff), today=today)

    def who(m: Member) -> dict[str, Any]:
        return {"id": m.id, "name": m.name, "phone_masked": mask_phone(m.phone)}

    month = a.next_month_start
    month_label = (
        f"{month.year}年{month.month}月" if staff.locale == "zh_CN" else (month.strftime("%B %Y"))
    )
    return staff_page(
        request,
        staff,
        "today.html",
        today=today.isoformat(),
        next_month=month_label,
        birthdays_today=[
            {"member": who(b.member), "on": b.on.isoformat(), "lunar": b.lunar}
            for b in a.birthdays_today
        ],
        birthdays_next_month=[
            {"member": who(b.member), "on": b.on.isoformat(), "lunar": b.lunar}
            for b in a.birthdays_next_month
        ],
        care=[{**vars(c), "member": who(c.member)} for c in a.care],
        dormant=[
            {"member": who(m), "last": _local_day(request, m.last_purchase_at)} for m in a.dormant
        ],
        dormant_months=settings.messaging.dormant_months,
        unmailable=unmailable_rows(request, a.unmailable, staff.locale),
    )
