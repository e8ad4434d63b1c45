"""The till in the staff console: look a voucher up by code and use it at the staff
member's store (any staff) or void it with a reason (managers), with the rules of
`models.voucher_till`; a manager's points adjustment on the member page
(`models.purchases.visits.adjust_points`); the member page's vouchers and points
history (`till_context`). Every step records who: ``staff:<code>``."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.appkeys import SESSIONS, SETTINGS
from bot.staff.auth import FORM, console, error_page, form_value, redirect, staff_page
from bot.staff.render import text
from models import points_reads, staff_queries, stores, voucher_till, vouchers
from models.clock import brand_today
from models.db import transaction
from models.errors import InvalidInput, NotFound
from models.phone import mask_phone
from models.purchases.visits import adjust_points
from models.staff_auth import SignedIn
from models.staff_queries import Scope
from models.strict import ascii_int, row_id
from models.tables.members import Member
from models.types import utcnow

routes = web.RouteTableDef()


def _actor(staff: SignedIn) -> str:
    return f"staff:{staff.code}"


def _when(request: web.Request, at) -> str:
    return at.astimezone(request.app[SETTINGS].brand.tz).strftime("%Y-%m-%d %H:%M")


async def till_context(request: web.Request, session: AsyncSession, member: Member) -> dict:
    """The member page's vouchers (with their states today) and points history."""
    today = brand_today(request.app[SETTINGS].brand.tz)
    held = await vouchers.member_vouchers(session, member_id=member.id, today=today)
    entries = await points_reads.history(session, member_id=member.id, limit=50)
    return {
        "vouchers": [
            {
                "code": v.code,
                "value": f"{v.value:.2f}",
                "status": voucher_till.state(v, today),
                "expires": v.expires_on.isoformat(),
            }
            for v in held
        ],
        "ledger": [
            {
                "at": _when(request, e.at),
                "delta": e.delta,
                "reason": e.reason,
                "note": e.note,
                "balance": e.balance_after,
            }
            for e in entries
        ],
        "adjust_key": secrets.token_urlsafe(12),
    }


async def _voucher_view(request: web.Request, session: AsyncSession, code: str) -> dict[str, Any]:
    today = brand_today(request.app[SETTINGS].brand.tz)
    voucher = await voucher_till.find_voucher(session, code=code)
    seen = await voucher_till.voucher_history(session, voucher=voucher)
    return {
        "code": voucher.code,
        "value": f"{voucher.value:.2f}",
        "status": voucher_till.state(voucher, today),
        "expires": voucher.expires_on.isoformat(),
        "member": mask_phone(seen.phone) if seen.phone else "—",
        "events": [
            {
                "at": _when(request, e.at),
                "action": e.action,
                "store": store,
                "receipt_no": e.receipt_no,
                "actor": e.actor,
                "reason": e.reason,
            }
            for e, store in seen.events
        ],
    }


@routes.get("/staff/vouchers")
@console()
async def voucher_page(request: web.Request, staff: SignedIn) -> web.Response:
    code = request.query.get("code", "").strip()[:40]
    voucher = None
    error = None
    status = 200
    if code:
        try:
            async with transaction(request.app[SESSIONS]) as session:
                voucher = await _voucher_view(request, session, code)
        except NotFound:  # the page says so, with the form again
            error, status = text(staff.locale, "voucher.unknown"), 404
    done = request.query.get("done")
    notice = text(staff.locale, f"voucher.done_{done}") if done in ("used", "void") else None
    return staff_page(
        request,
        staff,
        "vouchers.html",
        status=status,
        code=code,
        voucher=voucher,
        error=error,
        notice=notice,
    )


@routes.post("/staff/vouchers/use")
@console()
async def use(request: web.Request, staff: SignedIn) -> web.Response:
    form = request[FORM]
    code = form_value(form, "code")
    receipt = form_value(form, "receipt_no").strip()[:64] or None
    async with transaction(request.app[SESSIONS]) as session:
        store = await stores.store_codes(session, store_ids={staff.store_id})
        voucher, _ = await voucher_till.use_voucher(
            session,
            tz=request.app[SETTINGS].brand.tz,
            code=code,
            store_code=store[staff.store_id],
            receipt_no=receipt,
            actor=_actor(staff),
            now=utcnow(),
        )
    return redirect(f"/staff/vouchers?code={voucher.code}&done=used")


@routes.post("/staff/vouchers/void")
@console(manager_only=True)
async def void(request: web.Request, staff: SignedIn) -> web.Response:
    form = request[FORM]
    settings = request.app[SETTINGS]
    async with transaction(request.app[SESSIONS]) as session:
        voucher = await voucher_till.void_voucher(
            session,
            rules=settings.loyalty,
            tz=settings.brand.tz,
            code=form_value(form, "code"),
            reason=form_value(form, "reason")[:150],
            actor=_actor(staff),
            now=utcnow(),
        )
    return redirect(f"/staff/vouchers?code={voucher.code}&done=void")


@routes.post("/staff/members/{member_id}/adjust")
@console(manager_only=True)
async def adjust(request: web.Request, staff: SignedIn) -> web.Response:
    """A manager's correction; the form's one-time key makes a double submit harmless."""
    form = request[FORM]
    settings = request.app[SETTINGS]
    raw = form_value(form, "points").strip()
    points = ascii_int(raw.lstrip("-"), max_digits=7)
    if points is None:
        raise InvalidInput("points: a whole number, e.g. 120 or -120", "points")
    points = -points if raw.startswith("-") else points
    member_id = row_id(request.match_info["member_id"])
    scope = Scope(assistant_id=staff.assistant_id, store_id=staff.store_id, manager=True)
    async with transaction(request.app[SESSIONS]) as session:
        member = None
        if member_id is not None:
            member = await staff_queries.visible_member(session, scope=scope, member_id=member_id)
        if member is None:
            return error_page(request, staff, 404, "error.not_found")
        await adjust_points(
            session,
            rules=settings.loyalty,
            tz=settings.brand.tz,
            member_id=member.id,
            delta=points,
            key=f"console:{form_value(form, 'key')[:40] or secrets.token_hex(8)}",
            at=utcnow(),
            reason=form_value(form, "reason")[:150],
            actor=_actor(staff),
        )
    return redirect(f"/staff/members/{member.id}?adjusted=1#points")
