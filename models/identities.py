"""Identities — who writes to us on which channel — and a member's WeChat account.

At most one active WeChat identity per member, stated here and nowhere else. The
database enforces it (the partial unique index `uq_identities_member_active_wechat`
on `identities.member_id` where the row is an active WeChat identity), so two openids
that bind one member at the same moment leave one active identity, not two: the
second one's write waits for the first to commit and is then refused. `activate_wechat`
turns that refusal into an answer (False) instead of failing the whole transaction.

An identity's `last_inbound_at` (the start of the 48-hour customer-service window,
MESSAGING.md) is written by one statement, `STAMP`, on both paths that write it: the
session path (`stamp`, `bot.bot`) and the raw driver of the quick path (`stamp_text`,
`bot.quick`). It is rewritten only when older than the caller's `stale` (which is
before `now`), so it only ever moves forward, even when deferred writes land out of
order. Only a message the member sent stamps; events do not (the callers decide).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import consent, rawdb
from models.tables.members import Identity, Member


def _wechat_active() -> tuple:
    """Active WeChat identities."""
    return (Identity.channel == "wechat", Identity.active == True)  # noqa: E712


def _active_wechat(member_id: int) -> tuple:
    """The member's active WeChat identities."""
    return (Identity.member_id == member_id, *_wechat_active())


async def active_openid(session: AsyncSession, *, member_id: int) -> str | None:
    """The openid of the member's active WeChat identity, if any."""
    stmt = select(Identity.address).where(*_active_wechat(member_id)).order_by(Identity.id.desc())
    return (await session.exec(stmt)).first()


async def active_openids(session: AsyncSession, *, member_ids: list[int]) -> dict[int, str]:
    """`active_openid` of many members at once: member id → openid, for those with one."""
    stmt = (
        select(Identity.member_id, Identity.address)
        .where(col(Identity.member_id).in_(member_ids), *_wechat_active())
        .order_by(col(Identity.id).desc())
    )
    openids: dict[int, str] = {}
    for member_id, address in (await session.exec(stmt)).all():
        openids.setdefault(member_id, address)
    return openids


async def deactivate_wechat(
    session: AsyncSession, *, member_id: int, keep_address: str | None = None
) -> None:
    """Deactivate the member's active WeChat identities, all but `keep_address`'s."""
    await session.exec(
        update(Identity)
        .where(*_active_wechat(member_id), Identity.address != (keep_address or ""))
        .values(active=False)
        .execution_options(synchronize_session="fetch")
    )


async def activate_wechat(
    session: AsyncSession, *, identity: Identity, member_id: int, take_over: bool = True
) -> bool:
    """Make `identity` the active WeChat identity of member `member_id`.

    `take_over`: deactivate the member's other WeChat identities first (a binding: the
    newest account wins); else only activate when no other one is active (a re-follow).
    Returns False, with `identity` as it was, when another identity of the member is
    active — with `take_over`, one committed by a concurrent binding this transaction
    could not see.
    """
    if not take_over:
        others = select(Identity.id).where(*_active_wechat(member_id), Identity.id != identity.id)
        if (await session.exec(others)).first() is not None:
            return False
    try:
        async with session.begin_nested():
            if take_over:
                await deactivate_wechat(session, member_id=member_id, keep_address=identity.address)
            identity.member_id = member_id
            identity.active = True
            session.add(identity)
            await session.flush()
    except IntegrityError:
        await session.refresh(identity)
        return False
    return True


async def link_wechat(session: AsyncSession, *, identity: Identity, member: Member) -> bool:
    """Make the openid of `identity` the member's WeChat account (a binding); False when
    another openid bound the member at the same moment."""
    if not await activate_wechat(session, identity=identity, member_id=member.id):
        return False
    # A stop this openid sent before it was a member's applies now (models.consent).
    await consent.adopt_address(session, member=member, address=identity.address)
    return True


async def follow(session: AsyncSession, *, identity: Identity) -> bool:
    """An inactive openid follows again: its identity is active again — unless it is a
    member's who has meanwhile bound another WeChat account (then False)."""
    if identity.member_id is not None:
        return await activate_wechat(
            session, identity=identity, member_id=identity.member_id, take_over=False
        )
    identity.active = True
    session.add(identity)
    await session.flush()
    return True


async def unfollow(session: AsyncSession, *, identity: Identity) -> None:
    """The openid unfollowed: no proactive WeChat message can reach it. The binding is
    kept, so following again restores it."""
    if identity.active:
        identity.active = False
        session.add(identity)
        await session.flush()


# --------------------------------------------------------------------------- the stamp

_IDENTITIES = Identity.__table__
STAMP = (
    _IDENTITIES.update()
    .where(
        _IDENTITIES.c.channel == bindparam("b_channel"),
        _IDENTITIES.c.address == bindparam("b_address"),
        or_(
            _IDENTITIES.c.last_inbound_at.is_(None),
            _IDENTITIES.c.last_inbound_at <= bindparam("b_stale"),
        ),
    )
    .values(last_inbound_at=bindparam("b_now"))
)
"""Record that an address just wrote (`b_now`), if its stamp is older than `b_stale`.
Built once: building a statement costs more CPU than running it."""
STAMP_ARGS = ("b_now", "b_channel", "b_address", "b_stale")
"""The order of `stamp_text`'s parameters."""


async def stamp(
    session: AsyncSession, *, channel: str, address: str, now: datetime, stale: datetime
) -> None:
    """`STAMP` in the session's transaction."""
    params = {"b_channel": channel, "b_address": address, "b_now": now, "b_stale": stale}
    await session.exec(STAMP, params=params)


def stamp_text(dialect: str) -> str:
    """`STAMP` for a raw driver (`models.rawdb`) of `dialect` ("sqlite" or "postgresql"):
    `?` placeholders, the values in the order of `STAMP_ARGS`, as the driver stores them."""
    sql, names = rawdb.compiled(STAMP, dialect)
    assert names == STAMP_ARGS, names
    return sql
