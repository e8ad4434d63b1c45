"""The sender of a message, read and locked (`bot.bot.MemberBot`): a WeChat openid's
identity with the member it is actively bound to and its pending action, created unbound
on first contact (`wechat_sender`), and the per-sender lock that serialises a sender's
changing messages across replicas (`lock_sender`: the identity row; `lock_address`: an
advisory lock on an SMS or console address)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, bindparam, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.handlers.turn import Turn
from models.db import insert_ignore, is_postgres
from models.tables.conversation import PendingAction
from models.tables.members import Identity, Member

# The statements of every message are built once (building one costs more CPU than
# running it); values go in as parameters.
_IDENTITIES = Identity.__table__
_SENDER = (
    select(Identity, Member, PendingAction)
    .outerjoin(Member, and_(Member.id == Identity.member_id, col(Identity.active)))
    .outerjoin(
        PendingAction,
        and_(PendingAction.channel == "wechat", PendingAction.sender == Identity.address),
    )
    .where(Identity.channel == "wechat", Identity.address == bindparam("openid"))
)
"""The openid's identity, the member it is actively bound to and its pending action."""
_SENDER_LOCKED = _SENDER.with_for_update(of=Identity).execution_options(populate_existing=True)


async def wechat_sender(
    session: AsyncSession, openid: str, now: datetime, wrote: bool = True
) -> tuple[Identity, Member | None, PendingAction | None]:
    """(identity, member, pending action) of an openid; the identity is created unbound
    on first contact (and stamped as just heard from when the member `wrote`)."""
    found = (await session.exec(_SENDER, params={"openid": openid})).first()
    if found is None:
        stmt = (
            insert_ignore(session.bind.dialect.name, _IDENTITIES)
            .values(channel="wechat", address=openid, member_id=None, active=True, bad=False,
                    last_inbound_at=now if wrote else None, created_at=now)
            .on_conflict_do_nothing(index_elements=["channel", "address"])
        )  # fmt: skip
        await session.exec(stmt)
        found = (await session.exec(_SENDER, params={"openid": openid})).one()
    identity, member, row = found
    return identity, member, row


async def lock_sender(turn: Turn) -> None:
    """Lock the WeChat sender's identity row for this transaction and read the sender
    again (PostgreSQL; SQLite's transactions already run one at a time): what a
    concurrent message of the same sender committed meanwhile — a binding, a spent
    balance, a new pending action — is what this message then sees."""
    identity = turn.identity
    if turn.sender_locked or not is_postgres(turn.session):
        return
    if identity is None:
        await lock_address(turn)
        return
    params = {"openid": turn.inbound.sender}
    identity, member, row = (await turn.session.exec(_SENDER_LOCKED, params=params)).one()
    turn.sender_locked = True
    turn.identity, turn.member, turn.pending, turn.pending_read = identity, member, row, True
    turn.set_language(turn.wrote_in)


_ADDRESS_LOCK = text("SELECT pg_advisory_xact_lock(:ns, hashtext(:address))")
ADDRESS_LOCKS = 7_364_010
"""First key of the two-key advisory locks that serialise an SMS sender (the one-key
locks of `models.db` and `scheduler.jobs` are another key space)."""
_MEMBER_AGAIN = (
    select(Member)
    .where(Member.id == bindparam("member_id"))
    .execution_options(populate_existing=True)
)


async def lock_address(turn: Turn) -> None:
    """The SMS (or console) sender has no identity row to lock: a transaction-scoped
    advisory lock on its address serialises its changing messages across replicas, as
    the identity row lock does a WeChat sender's — a CONFIRM sent right behind a
    REDEEM waits for it and finds what it stored. The member is read again under it."""
    key = f"{turn.inbound.channel}:{turn.inbound.sender}"
    await turn.session.exec(_ADDRESS_LOCK, params={"ns": ADDRESS_LOCKS, "address": key})
    turn.sender_locked = True
    if turn.member is not None:
        params = {"member_id": turn.member.id}
        turn.member = (await turn.session.exec(_MEMBER_AGAIN, params=params)).one()
