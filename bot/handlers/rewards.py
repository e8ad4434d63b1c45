"""Rewards and redemption: 兑换 / DH / REDEEM [N], then 确认 / CONFIRM / YES.

DOMAIN.md §2 "Redemption" (000 §17: 3,000 points → a 300-yuan voucher) and §4
(never below zero, never twice for one request); CONTRACT.md "Member keywords".

- `兑换` lists the catalogue numbered from 1 with each cost and the balance.
- `兑换 N` checks the balance and asks for a confirmation: a pending action
  (`bot.handlers.pending`) valid for 10 minutes. Not enough points → how many
  are missing, and nothing is stored.
- The confirmation redeems through `models.vouchers.redeem` with the key
  ``chat:<pending token>``, so a repeated or concurrent confirmation issues one
  voucher, and answers with the voucher's code, value and last day.
"""

from __future__ import annotations

from bot.conversation import Reply
from bot.handlers import pending
from bot.handlers.turn import CONFIRM_WINDOW_MINUTES, Route, Turn
from bot.router import Intent, Match, item_number
from models import vouchers
from models.errors import InsufficientPoints
from models.pending import REDEEM, payload
from models.tables.conversation import PendingAction


def _catalogue(turn: Turn) -> list[dict]:
    return [
        {
            "n": n,
            "name": turn.reward_name(r),
            "cost": r.cost,
            "value": r.voucher_value,
            "affordable": r.cost <= turn.member.points,
        }
        for n, r in enumerate(turn.rules.rewards.catalogue, start=1)
    ]


async def redeem(turn: Turn, match: Match) -> Reply:
    member = turn.member
    catalogue = turn.rules.rewards.catalogue
    if not catalogue:
        return turn.reply("rewards_none", points=member.points)
    number = item_number(match.args) if match.args else None
    if number is None:
        return turn.reply("rewards_list", rewards=_catalogue(turn), points=member.points)
    if not 1 <= number <= len(catalogue):
        return turn.reply(
            "redeem_bad_number", number=number, rewards=_catalogue(turn), points=member.points
        )
    reward = catalogue[number - 1]
    if member.points < reward.cost:
        return turn.reply(
            "redeem_short",
            reward=turn.reward_name(reward),
            cost=reward.cost,
            points=member.points,
            missing=reward.cost - member.points,
        )
    await pending.put(turn, kind=REDEEM, data={"reward": reward.code})
    return turn.reply(
        "redeem_ask",
        "redeem_pending",
        reward=turn.reward_name(reward),
        value=reward.voucher_value,
        cost=reward.cost,
        points=member.points,
        after=member.points - reward.cost,
        minutes=CONFIRM_WINDOW_MINUTES,
    )


async def confirm(turn: Turn, row: PendingAction) -> Reply:
    """Carry out a confirmed redemption (idempotent per pending action)."""
    member = turn.member
    reward = turn.rules.rewards.by_code(payload(row).get("reward", ""))
    if reward is None:  # the catalogue changed under the member's feet
        await pending.clear(turn, row)
        return turn.reply("rewards_list", rewards=_catalogue(turn), points=member.points)
    try:
        voucher, created = await vouchers.redeem(
            turn.session,
            rules=turn.rules,
            tz=turn.tz,
            member_id=member.id,
            reward_code=reward.code,
            key=f"chat:{row.token}",
            now=turn.now,
        )
    except InsufficientPoints as exc:
        await pending.clear(turn, row)
        return turn.reply(
            "redeem_short",
            reward=turn.reward_name(reward),
            cost=reward.cost,
            points=exc.balance,
            missing=reward.cost - exc.balance,
        )
    await pending.complete(turn, row)
    if not created:  # a twin redeemed it: read the balance it left (we waited for its commit)
        await turn.session.refresh(member, ["points"])
    return turn.reply(
        "redeem_done",
        *(("redeemed",) if created else ()),
        reward=turn.reward_name(reward),
        code=voucher.code,
        value=voucher.value,
        expires=voucher.expires_on,
        points=member.points,
    )


ROUTES = [Route(Intent.REDEEM, redeem)]
CONFIRMS = {REDEEM: confirm}
