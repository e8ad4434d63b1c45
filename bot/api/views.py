"""The member view (CONTRACT.md "member view"): a member as the API answers it — the
member JSON fields plus points, tier, spend, vouchers, consent history and card
applications. The shape is the edge's; the reads behind it are the domain's data
functions (`models.members`, `models.vouchers`, `models.consent`, ...)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from models import consent, member_cards, members, stores, vouchers
from models.identities import active_openid
from models.member_input import format_day
from models.rules import LoyaltyRules
from models.tables.members import Member


def _money(value) -> str:
    return f"{value:.2f}"


def _iso(at: datetime | None, tz: ZoneInfo) -> str | None:
    return at.astimezone(tz).isoformat() if at else None


async def member_view(
    session: AsyncSession, *, rules: LoyaltyRules, tz: ZoneInfo, member: Member, today: date
) -> dict:
    """The member as JSON-ready data: the member JSON fields plus points, tier, spend,
    vouchers, consent history and card applications (CONTRACT.md member view)."""
    level = rules.tiers.level(member.tier)
    member_vouchers = await vouchers.member_vouchers(session, member_id=member.id, today=today)
    events = await consent.history(session, member_id=member.id)
    apps = await member_cards.card_applications(session, member_id=member.id)
    store = await stores.store_codes(session, store_ids={member.store_id})
    staff = await stores.assistant_codes(session, assistant_ids={member.assistant_id})
    return {
        "phone": member.phone,
        "name": member.name,
        "gender": member.gender,
        "birthday": format_day(member.birthday_year, member.birthday_month, member.birthday_day),
        "birthday_calendar": member.birthday_calendar,
        "birthday_leap_month": member.birthday_leap_month,
        "wedding_anniversary": format_day(
            member.wedding_year, member.wedding_month, member.wedding_day
        ),
        "store": store.get(member.store_id),
        "assistant": staff.get(member.assistant_id),
        "card_no": member.card_no,
        "preferred_contact": member.preferred_contact,
        "wechat_openid": await active_openid(session, member_id=member.id),
        "address": member.address,
        "locale": member.locale,
        "join_date": member.join_date.isoformat(),
        "points": int(member.points),
        "tier": level.code,
        "tier_name": level.name,
        "eligible_tier": member.eligible_tier,
        "cumulative_spend": _money(member.cumulative_spend),
        "visits": member.visits,
        "purchases": member.purchases_count,
        "last_purchase": _iso(member.last_purchase_at, tz),
        "vouchers": [
            {
                "code": v.code,
                "value": _money(v.value),
                # Past its last day but not yet swept by the daily job: expired all the same.
                "status": "expired" if v.status == "issued" and v.expires_on < today else v.status,
                "expires": v.expires_on.isoformat(),
            }
            for v in member_vouchers
        ],
        "stopped": member.stopped,
        "bad_number": await members.bad_number(session, phone=member.phone),
        "consent": [
            {"action": e.action, "channel": e.channel, "at": _iso(e.at, tz), "source": e.source}
            for e in events
        ],
        "card_applications": [
            {
                "id": a.id,
                "tier": a.tier,
                "status": a.status,
                "pickup_date": a.pickup_date.isoformat() if a.pickup_date else None,
            }
            for a in apps
        ],
    }
