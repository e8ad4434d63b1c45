"""My vouchers: 券 / 我的券 / VOUCHERS (CONTRACT.md "Member keywords", DOMAIN.md §4).

Lists the member's usable vouchers (issued and not past their last day), soonest
expiry first, each with its code, value and last day; with none, says so and how
to redeem points for one.
"""

from __future__ import annotations

from bot.conversation import Reply
from bot.handlers.turn import Route, Turn
from bot.router import Intent, Match
from models import vouchers


async def show(turn: Turn, match: Match) -> Reply:
    member = turn.member
    rows = await vouchers.member_vouchers(
        turn.session, member_id=member.id, today=turn.today, active_only=True
    )
    if not rows:
        cheapest = min((r.cost for r in turn.rules.rewards.catalogue), default=None)
        return turn.reply("vouchers_none", points=member.points, cheapest=cheapest)
    items = [{"code": v.code, "value": v.value, "expires": v.expires_on} for v in rows]
    return turn.reply("vouchers", vouchers=items)


ROUTES = [Route(Intent.VOUCHERS, show)]
