"""The inbox: conversations a member has with a person of the store (CONTRACT.md
"Sentences, small talk and hand-off", `/api/inbox`; docs/staff-console.md "Inbox").

What the bot cannot answer opens a conversation (`open_or_join`) with the member's
owning assistant (`models.ownership.owner_id`, when that assistant is active), else
with the managers of the member's store; a sender who is no member (an unbound
openid, an unknown phone) goes to the managers of every store (`store_id` NULL).
Later messages of the same sender join the conversation while it is not closed.

- A conversation is keyed by its `thread_key`: ``m:<member id>`` for a member (whatever
  channel they write on), else ``<channel>:<address>``. At most one conversation per
  key is not closed (a partial unique index), so two messages racing to open one
  end in the same row.
- `status`: ``open`` (the member waits for an answer), ``answered`` (a person
  answered last), ``closed`` (done; the next hand-off opens a new conversation).
  A member message to an answered conversation opens it again.
- Every message is kept (`ConversationMessage`): who wrote it (``member``,
  ``assistant`` with the assistant's id, ``bot``), when, on which channel and how it
  went out (`via`: ``passive`` for the bot's answer on the webhook,
  ``customer_service`` / ``twilio`` / ``console`` for a reply) and, for a reply,
  whether it was delivered (`status` ``sent`` / ``failed`` with `error`).

Who sees what (`visible`): an assistant the conversations routed to them; a manager
also those of their store and those of no store. No function here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import insert_ignore
from models.errors import Conflict, DomainError, InvalidInput, NotFound
from models.ownership import owner_id
from models.staff_queries import Scope
from models.strict import bad_char
from models.tables.inbox import LIVE, Conversation, ConversationMessage
from models.tables.members import Assistant, Member

OPEN, ANSWERED, CLOSED = "open", "answered", "closed"
STATUSES = (OPEN, ANSWERED, CLOSED)
MEMBER, ASSISTANT, BOT = "member", "assistant", "bot"
SENT, FAILED = "sent", "failed"
TEXT_MAX = 2000
"""Longest message kept (a longer one is cut; a reply longer than this is refused)."""


class NotYours(DomainError):
    """The conversation exists but belongs to another assistant: 403."""

    status = 403

    def __init__(self) -> None:
        super().__init__("this conversation is not yours", "id")


def clean_reply(text: object) -> str:
    """An answer's text: 1 to `TEXT_MAX` characters, no control characters (else 422)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("the answer needs a text", "text")
    text = text.strip()
    if len(text) > TEXT_MAX:
        raise InvalidInput(f"an answer has at most {TEXT_MAX} characters", "text")
    if bad_char(text):
        raise InvalidInput("control characters are not allowed", "text")
    return text


def check_open(conversation: Conversation) -> None:
    """A closed conversation takes no answer (409)."""
    if conversation.status == CLOSED:
        raise Conflict("the conversation is closed", "id")


def thread_key(member_id: int | None, channel: str, address: str) -> str:
    return f"m:{member_id}" if member_id is not None else f"{channel}:{address}"


async def answerer(session: AsyncSession, member: Member | None) -> tuple[int | None, int | None]:
    """(assistant id, store id) a hand-off of `member` goes to (module rules)."""
    if member is None:
        return None, None
    owner = await owner_id(session, member=member)
    if owner is not None:
        assistant = await session.get(Assistant, owner)
        if assistant is None or not assistant.active:
            owner = None
    return owner, member.store_id


async def live(session: AsyncSession, key: str) -> Conversation | None:
    """The conversation of `key` that is not closed, if any."""
    stmt = select(Conversation).where(Conversation.thread_key == key, Conversation.status != CLOSED)
    return (await session.exec(stmt)).first()


async def open_or_join(
    session: AsyncSession, *, member: Member | None, channel: str, address: str, now: datetime
) -> tuple[Conversation, bool]:
    """The sender's live conversation, opened now if there is none: (conversation, opened).
    Joining re-routes it to the member's current answerer and marks it open."""
    key = thread_key(member.id if member else None, channel, address)
    assistant_id, store_id = await answerer(session, member)
    found = await live(session, key)
    opened = False
    if found is None:
        stmt = (
            insert_ignore(session.bind.dialect.name, Conversation.__table__)
            .values(thread_key=key, member_id=member.id if member else None, channel=channel,
                    address=address, assistant_id=assistant_id, store_id=store_id, status=OPEN,
                    opened_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=["thread_key"], index_where=text(LIVE))
        )  # fmt: skip
        opened = ((await session.exec(stmt)).rowcount or 0) > 0
        found = await live(session, key)
        assert found is not None
    if not opened:
        found.channel, found.address, found.status, found.updated_at = channel, address, OPEN, now
        found.assistant_id, found.store_id = assistant_id, store_id
        session.add(found)
    return found, opened


def add_message(
    session: AsyncSession,
    conversation: Conversation,
    *,
    author: str,
    text: str,
    at: datetime,
    channel: str,
    via: str | None = None,
    assistant_id: int | None = None,
    status: str | None = None,
    error: str | None = None,
) -> ConversationMessage:
    message = ConversationMessage(
        conversation_id=conversation.id, author=author, assistant_id=assistant_id,
        text=text[:TEXT_MAX], at=at, channel=channel, via=via, status=status,
        error=error[:200] if error else None,
    )  # fmt: skip
    session.add(message)
    return message


def visible(scope: Scope):
    """The conversations `scope` may see (module rules)."""
    if scope.manager:
        return or_(
            Conversation.assistant_id == scope.assistant_id,
            Conversation.store_id == scope.store_id,
            col(Conversation.store_id).is_(None),
        )
    return Conversation.assistant_id == scope.assistant_id


@dataclass(frozen=True)
class Thread:
    conversation: Conversation
    member: Member | None
    messages: list[ConversationMessage]


async def threads(
    session: AsyncSession, *, scope: Scope, status: str | None = None, limit: int = 200
) -> list[Thread]:
    """The visible conversations (of `status`, when given), last changed first."""
    stmt = (
        select(Conversation, Member)
        .outerjoin(Member, Member.id == Conversation.member_id)
        .where(visible(scope))
        .order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(Conversation.status == status)
    rows = list((await session.exec(stmt)).all())
    by_id = await _messages(session, [c.id for c, _m in rows])
    return [Thread(c, m, by_id.get(c.id, [])) for c, m in rows]


async def _messages(session: AsyncSession, ids: list[int]) -> dict[int, list]:
    out: dict[int, list[ConversationMessage]] = {i: [] for i in ids}
    if not ids:
        return out
    stmt = (
        select(ConversationMessage)
        .where(col(ConversationMessage.conversation_id).in_(ids))
        .order_by(col(ConversationMessage.at), col(ConversationMessage.id))
    )
    for message in (await session.exec(stmt)).all():
        out[message.conversation_id].append(message)
    return out


async def thread_for(session: AsyncSession, *, scope: Scope, conversation_id: int) -> Thread:
    """One conversation `scope` may act on: NotFound (404) when there is none,
    `NotYours` (403) when it is another assistant's."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound("no such conversation", "id")
    seen = select(Conversation.id).where(Conversation.id == conversation_id, visible(scope))
    if (await session.exec(seen)).first() is None:
        raise NotYours()
    member = await session.get(Member, conversation.member_id) if conversation.member_id else None
    messages = (await _messages(session, [conversation_id]))[conversation_id]
    return Thread(conversation, member, messages)


async def open_count(session: AsyncSession, *, scope: Scope) -> int:
    """How many visible conversations wait for an answer (the console's header)."""
    stmt = (
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.status == OPEN, visible(scope))
    )
    return int((await session.exec(stmt)).one())


async def mark(
    session: AsyncSession, conversation: Conversation, *, status: str, now: datetime,
    by: int | None = None,
) -> None:  # fmt: skip
    """Set the conversation's status (a reply: answered; close: closed)."""
    conversation.status, conversation.updated_at = status, now
    if status == CLOSED:
        conversation.closed_at, conversation.closed_by = now, by
    session.add(conversation)
    await session.flush()
