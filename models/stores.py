"""Stores and their assistants (導購, DOMAIN.md §8), and the assistants' API tokens.

An assistant's token is shown once — when the assistant is created or the token
is rotated — and only its SHA-256 hex digest is stored (`assistants.token_hash`).
A token is 32 random bytes, so a plain hash lookup is as safe as a slow hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.errors import InvalidInput
from models.tables.members import Assistant, Store

TOKEN_MAX = 512
"""Longer bearer tokens are refused without hashing them."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def get_store(session: AsyncSession, *, code: str) -> Store | None:
    return (await session.exec(select(Store).where(Store.code == code))).first()


async def get_assistant(session: AsyncSession, *, code: str) -> Assistant | None:
    return (await session.exec(select(Assistant).where(Assistant.code == code))).first()


async def upsert_store(
    session: AsyncSession, *, code: str, name: str, city: str
) -> tuple[Store, bool]:
    """Create the store `code`, or update its name and city. Returns (store, created)."""
    store = await get_store(session, code=code)
    if store is None:
        store = Store(code=code, name=name, city=city)
        session.add(store)
        await session.flush()
        return store, True
    store.name, store.city = name, city
    session.add(store)
    await session.flush()
    return store, False


async def create_or_update_assistant(
    session: AsyncSession,
    *,
    code: str,
    name: str,
    store_code: str,
    rotate_token: bool = False,
    role: str | None = None,
    password_hash: str | None = None,
) -> tuple[Assistant, bool, str | None]:
    """Create the assistant `code` in store `store_code`, or update name and store.

    Returns (assistant, created, token): the plain token only when the assistant is
    created or `rotate_token` is set (the old token stops working at once); None otherwise.
    An unknown store raises InvalidInput on the field "store". `role` ("assistant" |
    "manager") and `password_hash` (staff console, `models.staff_auth.hash_password`)
    are changed only when given.
    """
    store = await get_store(session, code=store_code)
    if store is None:
        raise InvalidInput(f"unknown store {store_code!r}", "store")
    assistant = await get_assistant(session, code=code)
    created = assistant is None
    token: str | None = None
    if assistant is None:
        assistant = Assistant(code=code, name=name, store_id=store.id)
    else:
        assistant.name, assistant.store_id = name, store.id
    if role is not None:
        assistant.role = role
    if password_hash is not None:
        assistant.password_hash = password_hash
    if created or rotate_token:
        token = secrets.token_urlsafe(32)
        assistant.token_hash = hash_token(token)
    session.add(assistant)
    await session.flush()
    return assistant, created, token


async def authenticate_assistant(session: AsyncSession, *, token: str) -> Assistant | None:
    """The active assistant holding `token`, or None: the API (`POST /api/greetings`) and
    the console's token sign-in. The digest is looked up, then compared in constant time;
    a token longer than `TOKEN_MAX` is refused without hashing it. Never logs the token."""
    if not token or len(token) > TOKEN_MAX:
        return None
    digest = hash_token(token)
    stmt = select(Assistant).where(
        Assistant.token_hash == digest,
        Assistant.active == True,  # noqa: E712
    )
    found = (await session.exec(stmt)).first()
    if found is None or not found.token_hash:
        return None
    if not hmac.compare_digest(found.token_hash.encode(), digest.encode()):
        return None
    return found


async def store_codes(session: AsyncSession, *, store_ids: set[int | None]) -> dict[int, str]:
    """Store id → code, for the ids given (one query)."""
    ids = {i for i in store_ids if i is not None}
    if not ids:
        return {}
    rows = await session.exec(select(Store.id, Store.code).where(Store.id.in_(ids)))
    return dict(rows.all())


async def assistant_codes(
    session: AsyncSession, *, assistant_ids: set[int | None]
) -> dict[int, str]:
    """Assistant id → code, for the ids given (one query)."""
    ids = {i for i in assistant_ids if i is not None}
    if not ids:
        return {}
    rows = await session.exec(select(Assistant.id, Assistant.code).where(Assistant.id.in_(ids)))
    return dict(rows.all())
