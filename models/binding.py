"""Binding codes: the six-digit codes that link a WeChat account to a membership.

The conversation (`bot.handlers.bind`) asks and answers; the rules of the codes live
here (CONTRACT.md "Member keywords"):

- Requests are rate-limited (`LIMITS`): at most 3 codes per 10 minutes per openid and
  per phone, and at most 10 per 24 hours per phone. Every request is a `BindCode`
  row, so the rows are the rate-limit log.
- A new request supersedes the openid's earlier pending code.
- A request for a phone no member has is kept with no member (rate limits still count
  it) and no code can ever match it.
- Only a salted HMAC-SHA256 of the code is stored (`code_hash`, per-row `salt`).
- A code is valid for `CODE_VALID_MINUTES`; the `MAX_WRONG_TRIES`-th wrong try kills it.
- A code whose SMS could not be sent is ``failed``: it can never be right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.members import get_member_by_phone
from models.tables.conversation import BindCode
from models.tables.members import Member

CODE_VALID_MINUTES = 10
MAX_WRONG_TRIES = 5


@dataclass(frozen=True)
class Limit:
    key: str  # "openid" | "phone"
    count: int
    window: timedelta


LIMITS = (
    Limit("openid", 3, timedelta(minutes=10)),
    Limit("phone", 3, timedelta(minutes=10)),
    Limit("phone", 10, timedelta(hours=24)),
)


def hash_code(code: str, *, salt: str, openid: str) -> str:
    return hmac.new(salt.encode(), f"{openid}:{code}".encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def code_matches(row: BindCode, code: str) -> bool:
    """`code` is the one sent for `row` (compared in constant time)."""
    return hmac.compare_digest(row.code_hash, hash_code(code, salt=row.salt, openid=row.openid))


async def rate_limited(session: AsyncSession, *, openid: str, phone: str, now: datetime) -> bool:
    """True when one more code for this openid or phone would pass a limit of `LIMITS`."""
    for limit in LIMITS:
        column = BindCode.openid if limit.key == "openid" else BindCode.phone
        value = openid if limit.key == "openid" else phone
        stmt = select(func.count()).where(column == value, BindCode.created_at > now - limit.window)
        if (await session.exec(stmt)).one() >= limit.count:
            return True
    return False


async def request_code(
    session: AsyncSession, *, openid: str, phone: str, now: datetime
) -> tuple[BindCode, Member | None, str]:
    """A new code for `openid` to bind the membership of `phone` (superseding the openid's
    pending one): the stored row, the member with that phone (None: the row can never
    match) and the code itself, which is not stored."""
    await session.exec(
        update(BindCode)
        .where(BindCode.openid == openid, BindCode.status == "pending")
        .values(status="superseded")
        .execution_options(synchronize_session=False)
    )
    member = await get_member_by_phone(session, phone=phone)
    code, salt = new_code(), secrets.token_hex(16)
    row = BindCode(
        openid=openid,
        phone=phone,
        member_id=member.id if member else None,
        code_hash=hash_code(code, salt=salt, openid=openid),
        salt=salt,
        created_at=now,
        expires_at=now + timedelta(minutes=CODE_VALID_MINUTES),
    )
    session.add(row)
    await session.flush()
    return row, member, code


async def waiting_code(session: AsyncSession, *, openid: str, now: datetime) -> BindCode | None:
    """The openid's code still waiting to be typed in (pending, unexpired), if any."""
    stmt = (
        select(BindCode)
        .where(
            BindCode.openid == openid,
            BindCode.status == "pending",
            BindCode.expires_at > now,
        )
        .order_by(col(BindCode.created_at).desc(), col(BindCode.id).desc())
    )
    return (await session.exec(stmt)).first()


async def pending_code(session: AsyncSession, *, openid: str) -> BindCode | None:
    """The openid's newest pending code (expired or not), locked for the transaction."""
    stmt = (
        select(BindCode)
        .where(BindCode.openid == openid, BindCode.status == "pending")
        .order_by(col(BindCode.created_at).desc(), col(BindCode.id).desc())
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(stmt)).first()


def set_status(session: AsyncSession, *, row: BindCode, status: str) -> None:
    """``expired`` (typed in too late) or ``used`` (the binding is made)."""
    row.status = status
    session.add(row)


def wrong_try(session: AsyncSession, *, row: BindCode) -> int:
    """Count a wrong try; the tries left (0: the code is now ``dead``)."""
    row.attempts += 1
    if row.attempts >= MAX_WRONG_TRIES:
        row.status = "dead"
    session.add(row)
    return max(MAX_WRONG_TRIES - row.attempts, 0)


async def mark_failed(session: AsyncSession, *, bind_code_id: int) -> None:
    """The SMS could not be sent: the code can never be right."""
    await session.exec(update(BindCode).where(BindCode.id == bind_code_id).values(status="failed"))
