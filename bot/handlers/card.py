"""Card pickup: 领卡 [day] / LK / PICKUP, and 寄卡 / MAIL (DOMAIN.md §5, 003 "銀卡跟進簿").

The member's card is their newest card application that was not cancelled.

- Not approved yet (applied, entered, sent to head office): its status, in words.
- Ready (approved, notified, notified again):
  - without a day: ask for one ("领卡 周六", "领卡 11-28");
  - with a day (`bot.handlers.daytext`; today up to `MAX_DAYS_AHEAD` days ahead,
    never in the past): the day is recorded as the application's pickup date.
    From ``approved`` that is the step to ``notified`` (the member evidently knows
    the card is ready, so the store need not announce it again), made through
    `models.cards.advance` with actor ``member:<channel>`` — a `CardEvent`.
    From ``notified``/``notified_again`` only the date changes (no status step,
    so no event: the card tracker's steps stay the store's steps).
- ``mailed``: it is on its way; ``picked_up``: they have it; ``rejected``: ask the store.
- No application: say so; a member flagged eligible for a higher tier hears that
  the store will help them apply.

寄卡 / MAIL on a ready card shows the address on file, masked (`mask_address`),
and asks for 确认 / CONFIRM (a pending action, 10 minutes). The confirmation moves
the application to ``mailed`` with that address (`cards.advance`, actor
``member:<channel>``). No address on file → ask them to contact the store.
"""

from __future__ import annotations

from datetime import timedelta

from bot.conversation import Reply
from bot.handlers import pending
from bot.handlers.daytext import parse_day
from bot.handlers.turn import CONFIRM_WINDOW_MINUTES, Route, Turn
from bot.router import Intent, Match
from models import card_reads, cards
from models.errors import Conflict
from models.pending import MAIL_CARD, payload
from models.tables.cards import CardApplication
from models.tables.conversation import PendingAction

READY = frozenset({"approved", "notified", "notified_again"})
IN_PROGRESS = frozenset({"applied", "entered", "sent_to_head_office"})
MAX_DAYS_AHEAD = 60
_ADDRESS_KEEP = 6


def mask_address(address: str) -> str:
    """Keep the first 6 characters (in China: province, city, district) and hide the
    rest behind a fixed "****", so neither the street number nor the length shows.
    Short addresses (up to 8 characters) keep only 2."""
    address = address.strip()
    keep = _ADDRESS_KEEP if len(address) > 8 else 2
    return address[:keep] + "****"


async def newest_application(turn: Turn) -> CardApplication | None:
    return await card_reads.newest_application(turn.session, member_id=turn.member.id)


async def _store(turn: Turn) -> dict:
    store = await turn.store()
    return {"store": store.name if store else None, "store_phone": store.phone if store else None}


async def _status_reply(turn: Turn, app: CardApplication | None) -> Reply:
    """The answer when the card is not (or no longer) waiting to be collected."""
    if app is None:
        eligible = turn.member.eligible_tier
        return turn.reply(
            "card_none",
            eligible=turn.tier_name(eligible) if eligible else None,
            **await _store(turn),
        )
    ctx = {"tier": turn.tier_name(app.tier), "status": app.status}
    if app.status in IN_PROGRESS:
        return turn.reply("card_in_progress", **ctx)
    if app.status == "mailed":
        address = app.mail_address or turn.member.address
        return turn.reply("card_mailed", address=mask_address(address) if address else None, **ctx)
    if app.status == "picked_up":
        return turn.reply("card_picked_up", **ctx)
    return turn.reply("card_rejected", **ctx, **await _store(turn))


async def pickup(turn: Turn, match: Match) -> Reply:
    app = await newest_application(turn)
    if app is None or app.status not in READY:
        return await _status_reply(turn, app)
    tier = turn.tier_name(app.tier)
    store = await _store(turn)
    if not match.args:
        return turn.reply("card_ask_day", tier=tier, planned=app.pickup_date, **store)
    day = parse_day(match.args, turn.today)
    if day is None:
        return turn.reply("card_bad_day", tier=tier, text=match.args)
    if day < turn.today:
        return turn.reply("card_past_day", tier=tier, day=day, today=turn.today)
    if day > turn.today + timedelta(days=MAX_DAYS_AHEAD):
        return turn.reply("card_far_day", tier=tier, day=day, max_days=MAX_DAYS_AHEAD)
    if app.status == "approved":
        await cards.advance(
            turn.session,
            rules=turn.rules,
            application_id=app.id,
            to_status="notified",
            actor=turn.actor,
            now=turn.now,
            note=f"member chose pickup day {day.isoformat()}",
            pickup_date=day,
            tz=turn.tz,
        )
    else:
        await cards.set_pickup_date(turn.session, application=app, day=day, now=turn.now)
    return turn.reply("card_day_set", "pickup_date", tier=tier, day=day, **store)


async def mail(turn: Turn, match: Match) -> Reply:
    app = await newest_application(turn)
    if app is None or app.status not in READY:
        return await _status_reply(turn, app)
    address = (app.mail_address or turn.member.address or "").strip()
    if not address:
        return turn.reply("card_no_address", tier=turn.tier_name(app.tier), **await _store(turn))
    await pending.put(
        turn, kind=MAIL_CARD, data={"application_id": app.id, "address": address}
    )
    return turn.reply(
        "card_mail_ask",
        "mail_pending",
        tier=turn.tier_name(app.tier),
        address=mask_address(address),
        minutes=CONFIRM_WINDOW_MINUTES,
    )


async def confirm_mail(turn: Turn, row: PendingAction) -> Reply:
    data = payload(row)
    app = await turn.session.get(CardApplication, data.get("application_id"))
    if app is None or app.member_id != turn.member.id:
        await pending.clear(turn, row)
        return await _status_reply(turn, await newest_application(turn))
    already = app.status == "mailed"
    try:
        await cards.advance(
            turn.session,
            rules=turn.rules,
            application_id=app.id,
            to_status="mailed",
            actor=turn.actor,
            now=turn.now,
            note="member confirmed the address",
            mail_address=data.get("address"),
            tz=turn.tz,
        )
    except Conflict:  # the store moved it meanwhile (e.g. picked up at the counter)
        await pending.clear(turn, row)
        return await _status_reply(turn, app)
    await pending.complete(turn, row)
    return turn.reply(
        "card_mail_done",
        *(() if already else ("mailed",)),
        tier=turn.tier_name(app.tier),
        address=mask_address(data.get("address", "")),
    )


ROUTES = [Route(Intent.PICKUP, pickup), Route(Intent.MAIL, mail)]
CONFIRMS = {MAIL_CARD: confirm_mail}
