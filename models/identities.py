"""A member's WeChat account: at most one active WeChat identity per member.

The database enforces it (the partial unique index `uq_identities_member_active_wechat`
on `identities.member_id` where the row is an active WeChat identity), so two openids
that bind one member at the same moment leave one active identity, not two: the
second one's write waits for the first to commit and is then refused. `activate_wechat`
turns that refusal into an answer (False) instead of failing the whole transaction.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables import Identity


async def activate_wechat(
    session: AsyncSession, *, identity: Identity, member_id: int, take_over: bool = True
) -> bool:
    """Make `identity` the active WeChat identity of member `member_id`.

    `take_over`: deactivate the member's other WeChat identities first (a binding: the
    newest account wins); else only activate when no other one is active (a re-follow).
    Returns False, with `identity` as it was, when another identity of the member is
    active — committed by a concurrent binding this transaction could not see.
    """
    try:
        async with session.begin_nested():
            if take_over:
                await session.exec(
                    update(Identity)
                    .where(
                        Identity.member_id == member_id,
                        Identity.channel == "wechat",
                        Identity.active == True,  # noqa: E712
                        Identity.id != identity.id,
                    )
                    .values(active=False)
                    .execution_options(synchronize_session=False)
                )
            identity.member_id = member_id
            identity.active = True
            session.add(identity)
            await session.flush()
    except IntegrityError:
        await session.refresh(identity)
        return False
    return True
