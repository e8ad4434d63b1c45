"""The store manager's page (role ``manager`` only; 403 for others): the numbers of
DOMAIN.md §9 (`models.staff_stats`), the members eligible for a card who have not
applied (`models.tiers.upgrade.eligible_not_applied`) and the latest ownership
redistribution (`models.probation`), which the manager may run for today."""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from bot.appkeys import SESSIONS, SETTINGS
from bot.staff.auth import console, redirect, staff_page
from bot.staff.pages import tier_name
from bot.staff.render import text
from models import probation, staff_stats
from models.clock import brand_today
from models.db import transaction
from models.errors import InvalidInput
from models.phone import mask_phone
from models.staff_auth import SignedIn
from models.stores import assistant_codes
from models.strict import ascii_int
from models.tiers.upgrade import eligible_not_applied

routes = web.RouteTableDef()
DEFAULT_DAYS = 30
MAX_DAYS = 366


def _period(request: web.Request, today: date) -> tuple[date, date]:
    """[start, end] from ?start=&end= (ISO dates), default the last 30 days to today."""
    try:
        end = date.fromisoformat(request.query.get("end") or today.isoformat())
        start = date.fromisoformat(
            request.query.get("start") or (end - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        )
    except ValueError:
        raise InvalidInput("start and end must be dates (YYYY-MM-DD)", "start") from None
    if start > end or (end - start).days >= MAX_DAYS:
        raise InvalidInput(
            f"the period must run forwards and last at most {MAX_DAYS} days", "start"
        )
    return start, end


@routes.get("/staff/manager")
@console(manager_only=True)
async def manager_page(request: web.Request, staff: SignedIn) -> web.Response:
    settings = request.app[SETTINGS]
    today = brand_today(settings.brand.tz)
    start, end = _period(request, today)
    store_id = staff.store_id
    async with transaction(request.app[SESSIONS]) as session:
        capture = await staff_stats.capture_rates(session, store_id=store_id, start=start, end=end)
        opt_in = await staff_stats.opt_in_rate(session, store_id=store_id)
        churn = await staff_stats.churn_rate(session, store_id=store_id, start=start, end=end)
        pickup = await staff_stats.pickup_progress(session, store_id=store_id)
        eligible = await eligible_not_applied(
            session, rules=settings.loyalty, store_id=store_id
        )
        moved = await staff_stats.latest_redistribution(session, store_id=store_id)
        codes = await assistant_codes(
            session,
            assistant_ids={m.from_assistant_id for m in moved.moved}
            | {m.to_assistant_id for m in moved.moved},
        )
    notice = None
    redistributed = ascii_int(request.query.get("redistributed", ""), max_digits=9)
    if redistributed is not None:
        notice = text(staff.locale, "manager.redistributed", n=redistributed)
    return staff_page(
        request,
        staff,
        "manager.html",
        notice=notice,
        start=start.isoformat(),
        end=end.isoformat(),
        capture=capture,
        opt_in=opt_in,
        churn=churn,
        pickup=pickup,
        eligible=[
            {
                "id": m.id,
                "name": m.name,
                "phone_masked": mask_phone(m.phone),
                "tier": tier_name(request, m.eligible_tier, staff.locale),
                "since": m.eligible_since.isoformat() if m.eligible_since else "—",
            }
            for m in eligible
        ],
        redistribution={
            "day": moved.day.isoformat() if moved.day else None,
            "rows": [
                {
                    "member_name": m.member_name,
                    "phone_masked": mask_phone(m.phone),
                    "from_code": codes.get(m.from_assistant_id, "?"),
                    "to_code": codes.get(m.to_assistant_id) if m.to_assistant_id else None,
                }
                for m in moved.moved
            ],
        },
    )


@routes.post("/staff/manager/redistribute")
@console(manager_only=True)
async def run_redistribution(request: web.Request, staff: SignedIn) -> web.Response:
    """Today's redistribution (the daily job's step; idempotent, date-driven)."""
    settings = request.app[SETTINGS]
    today = brand_today(settings.brand.tz)
    async with transaction(request.app[SESSIONS]) as session:
        done = await probation.redistribute(session, rules=settings.loyalty, today=today)
    return redirect(f"/staff/manager?redistributed={len(done)}")
