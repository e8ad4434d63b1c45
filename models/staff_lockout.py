"""The staff-console sign-in limit, kept in the database so every replica shares it.

Each sign-in attempt is counted against one or two keys: the client address, and
— for a code-and-password sign-in — the account it names (a wrong token names no
account, and tokens are too long to guess; the address limit covers them). A key
with `attempts` or more failures within `window` refuses every further attempt,
even with the right credentials, until enough of them have aged out.

An attempt is *reserved* before the credentials are checked (`reserve`, committed
by the caller), then counted (`refusal`): replicas taking attempts at the same
moment see each other's reservations, so a burst of parallel guesses cannot slip
past the limit. A refused attempt takes its reservation back; a successful one
takes its own back (`release`) and touches nobody else's count — neither the
address's nor another account's; a failed one keeps it as the failure.

Keys are SHA-256 digests of ``address:<ip>`` / ``account:<code>``: no address or
code is stored. No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables.staff import StaffSignInFailure


@dataclass(frozen=True)
class Limit:
    """At most `attempts` failures of `key` (a digest) within the window."""

    key: str
    attempts: int


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogateescape")).hexdigest()


def limits(*, address: str, account: str, per_address: int, per_account: int) -> list[Limit]:
    """The limits one attempt counts against: the address's, and the account's when the
    attempt names one (`account` = the assistant code typed; "" for a token sign-in)."""
    out = [Limit(_digest("address", address), per_address)]
    if account:
        out.append(Limit(_digest("account", account), per_account))
    return out


async def reserve(
    session: AsyncSession, *, limits: list[Limit], now: datetime, window: timedelta
) -> list[int]:
    """Count one attempt against every limit (as a failure until `release`d); sweeps rows
    older than the window. Returns the reservation's row ids."""
    await session.exec(delete(StaffSignInFailure).where(col(StaffSignInFailure.at) <= now - window))
    rows = [StaffSignInFailure(key=limit.key, at=now) for limit in limits]
    session.add_all(rows)
    await session.flush()
    return [row.id for row in rows if row.id is not None]


async def _retry_after(
    session: AsyncSession, limit: Limit, *, now: datetime, window: timedelta
) -> float | None:
    """Seconds until `limit` has fewer than `attempts` failures in the window, or None."""
    stmt = (
        select(StaffSignInFailure.at)
        .where(StaffSignInFailure.key == limit.key, col(StaffSignInFailure.at) > now - window)
        .order_by(col(StaffSignInFailure.at).desc())
        .offset(limit.attempts - 1)
        .limit(1)
    )
    oldest_counted = (await session.exec(stmt)).first()
    if oldest_counted is None:
        return None
    return max(1.0, (oldest_counted + window - now).total_seconds())


async def refusal(
    session: AsyncSession,
    *,
    limits: list[Limit],
    reserved: list[int],
    now: datetime,
    window: timedelta,
) -> float | None:
    """After `reserve` was committed: None if the attempt may go ahead, else the seconds
    to wait (for Retry-After) — the reservation is then taken back, so waiting out the
    window is enough. An attempt goes ahead while every key has at most `attempts`
    rows in the window, its own reservation included."""
    over = []
    for limit in limits:
        stmt = (
            select(func.count())
            .select_from(StaffSignInFailure)
            .where(StaffSignInFailure.key == limit.key, col(StaffSignInFailure.at) > now - window)
        )
        if (await session.exec(stmt)).one() > limit.attempts:
            over.append(limit)
    if not over:
        return None
    await release(session, reserved=reserved)
    waits = [await _retry_after(session, limit, now=now, window=window) for limit in over]
    return max((w for w in waits if w is not None), default=1.0)


async def release(session: AsyncSession, *, reserved: list[int]) -> None:
    """Take back a reservation (the attempt succeeded or was refused): it counts for no key."""
    if reserved:
        await session.exec(
            delete(StaffSignInFailure).where(col(StaffSignInFailure.id).in_(reserved))
        )
