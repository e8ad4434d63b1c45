"""Vouchers: redeeming points for rewards (DOMAIN.md §2 "Redemption", §4).

A voucher has a value, an unguessable code, an expiry day and a state
(``issued`` → ``used`` | ``expired`` | ``void``) and belongs to one member.

Redemption never takes a balance below zero and never redeems twice for one
request: the caller gives each request a ``key`` (e.g. the confirmed
conversation step or an API idempotency key).

- Sequential repeat: the voucher with that ``redemption_key`` is returned and
  nothing is deducted again.
- Concurrent twins (same key, same member): the deduction goes through
  `models.points.post_points` (key ``redeem:<key>``), which takes the member's
  row lock first. The twin waits for that lock until the winner commits, then
  finds the ledger key taken and gets None instead of a deduction; it then
  returns the winner's voucher, now committed and visible (PostgreSQL READ
  COMMITTED reads the latest committed data on each statement; SQLite runs
  writers one at a time). No unique violation is raised, so the caller's
  transaction stays usable and no savepoint or retry is needed.
- The same key used for another member's voucher is a `Conflict` (field "key").
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.clock import local_date
from models.errors import Conflict, InvalidInput
from models.points import post_points
from models.rules import LoyaltyRules
from models.tables.ledger import Voucher

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read over the phone
CODE_LENGTH = 12  # 32**12 = 2**60 codes


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


async def _by_key(session: AsyncSession, member_id: int, key: str) -> Voucher | None:
    voucher = (await session.exec(select(Voucher).where(Voucher.redemption_key == key))).first()
    if voucher is not None and voucher.member_id != member_id:
        raise Conflict("this redemption key was used for another member", "key")
    return voucher


async def redeem(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    member_id: int,
    reward_code: str,
    key: str,
    now: datetime,
) -> tuple[Voucher, bool]:
    """Deduct the reward's cost and issue its voucher; (voucher, True if issued now).

    Unknown reward → InvalidInput field "reward"; a balance that does not cover
    the cost → InsufficientPoints (nothing changes). Valid through brand today +
    ``valid_days``.
    """
    if not key:
        raise InvalidInput("a redemption needs a key", "key")
    existing = await _by_key(session, member_id, key)
    if existing is not None:
        return existing, False
    reward = rules.rewards.by_code(reward_code)
    if reward is None:
        raise InvalidInput(f"unknown reward {reward_code!r}", "reward")
    today = local_date(now, tz)
    entry = await post_points(
        session,
        rules=rules.points,
        member_id=member_id,
        delta=-reward.cost,
        reason="redemption",
        key=f"redeem:{key}",
        at=now,
        local_date=today,
        note=reward.code,
    )
    if entry is None:
        # A twin with this key committed while we waited for the member's lock.
        winner = await _by_key(session, member_id, key)
        if winner is None:
            raise Conflict("this redemption key was already used", "key")
        return winner, False
    voucher = Voucher(
        code=new_code(),
        member_id=member_id,
        reward_code=reward.code,
        value=reward.voucher_value,
        status="issued",
        issued_at=now,
        expires_on=today + timedelta(days=reward.valid_days),
        redemption_key=key,
        entry_id=entry.id,
    )
    session.add(voucher)
    await session.flush()
    return voucher, True


async def member_vouchers(
    session: AsyncSession, *, member_id: int, today: date, active_only: bool = False
) -> list[Voucher]:
    """The member's vouchers, soonest expiry first; `active_only`: issued and not past expiry."""
    stmt = select(Voucher).where(Voucher.member_id == member_id)
    if active_only:
        stmt = stmt.where(Voucher.status == "issued", Voucher.expires_on >= today)
    stmt = stmt.order_by(Voucher.expires_on, Voucher.id)
    return list((await session.exec(stmt)).all())
