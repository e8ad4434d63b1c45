"""Staff console credentials and sessions (docs/staff-console.md).

- An assistant signs in with their API token (`models.stores.authenticate_assistant`)
  or with their code and a password the store set (`POST /api/assistants` field
  `password`). Passwords are stored as scrypt hashes (`hash_password`): a random
  16-byte salt, N=2**14, r=8, p=1, 32-byte key, in the self-describing form
  ``scrypt$<n>$<r>$<p>$<salt hex>$<key hex>``.
- A successful sign-in opens a `StaffSession`: the browser gets 32 random bytes
  (URL-safe text) in a cookie, the table keeps only their SHA-256, an expiry and a
  per-session CSRF token. Signing out deletes the row. Expired rows are refused
  and deleted at the next sign-in.

No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.errors import InvalidInput
from models.stores import authenticate_assistant, get_assistant, hash_token
from models.tables.members import Assistant
from models.tables.staff import StaffSession

ROLES = ("assistant", "manager")
MANAGER = "manager"
_N, _R, _P, _KEY_LEN = 2**14, 8, 1, 32
MIN_PASSWORD = 8
MAX_PASSWORD = 200
_DUMMY_HASH = f"scrypt${_N}${_R}${_P}${'00' * 16}${'00' * _KEY_LEN}"
"""Checked against when the code is unknown, so the answer takes as long as a real check."""


def hash_password(password: str) -> str:
    """The scrypt hash of `password` (8 to 200 characters, else InvalidInput "password")."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(
            f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters", "password"
        )
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_KEY_LEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True if `password` matches the stored hash. A missing or malformed hash → False."""
    if not stored or len(password) > MAX_PASSWORD:
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(key)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", "role")
    return role


async def check_credentials(
    session: AsyncSession, *, code: str = "", secret: str
) -> Assistant | None:
    """The active assistant these credentials name, or None.

    With a `code`: `secret` is that assistant's console password (an assistant
    without one cannot sign in this way). Without: `secret` is an API token.
    """
    if not secret:
        return None
    if code:
        assistant = await get_assistant(session, code=code)
        if assistant is None or not assistant.active or not assistant.password_hash:
            # Spend the same time as a real check, so an unknown code (or one without a
            # password) is not told apart from a wrong password.
            await asyncio.to_thread(verify_password, secret, _DUMMY_HASH)
            return None
        ok = await asyncio.to_thread(verify_password, secret, assistant.password_hash)
        return assistant if ok else None
    return await authenticate_assistant(session, token=secret)


@dataclass(frozen=True)
class SignedIn:
    """Who is signed in to a console session, and the session's CSRF token and locale."""

    session_id: int
    assistant_id: int
    code: str
    name: str
    store_id: int
    role: str
    csrf_token: str
    locale: str
    expires_at: datetime

    @property
    def is_manager(self) -> bool:
        return self.role == MANAGER


async def open_session(
    session: AsyncSession, *, assistant: Assistant, now: datetime, ttl: timedelta, locale: str
) -> str:
    """Start a console session for `assistant`; returns the cookie value (shown only here).
    Also deletes every expired session."""
    await session.exec(delete(StaffSession).where(StaffSession.expires_at <= now))
    raw = secrets.token_urlsafe(32)
    session.add(
        StaffSession(
            token_hash=hash_token(raw),
            assistant_id=assistant.id,
            csrf_token=secrets.token_urlsafe(32),
            locale=locale,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    await session.flush()
    return raw


async def current(session: AsyncSession, *, raw: str, now: datetime) -> SignedIn | None:
    """The live session behind cookie value `raw` (not expired, assistant active), or None."""
    if not raw or len(raw) > 200:
        return None
    row = (
        await session.exec(
            select(StaffSession, Assistant)
            .join(Assistant, Assistant.id == StaffSession.assistant_id)
            .where(StaffSession.token_hash == hash_token(raw))
        )
    ).first()
    if row is None:
        return None
    staff_session, assistant = row
    if staff_session.expires_at <= now or not assistant.active:
        return None
    return SignedIn(
        session_id=staff_session.id,
        assistant_id=assistant.id,
        code=assistant.code,
        name=assistant.name,
        store_id=assistant.store_id,
        role=assistant.role,
        csrf_token=staff_session.csrf_token,
        locale=staff_session.locale,
        expires_at=staff_session.expires_at,
    )


async def set_locale(session: AsyncSession, *, session_id: int, locale: str) -> None:
    row = await session.get(StaffSession, session_id)
    if row is not None:
        row.locale = locale
        session.add(row)
        await session.flush()


async def close_session(session: AsyncSession, *, raw: str) -> bool:
    """Sign out: delete the session behind `raw`. True if there was one."""
    result = await session.exec(
        delete(StaffSession).where(StaffSession.token_hash == hash_token(raw))
    )
    return (result.rowcount or 0) > 0
