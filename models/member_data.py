"""A member's data rights (个人信息保护法 arts. 45 and 47; docs/privacy.md): everything held
about one member as one document, and erasure of their personal data.

Export (`export_member`): the member's row and every row of every table that refers to
the member (a `member_id` column), with the items of their purchases, the events of
their card applications and outbox messages, and the inbound de-duplication rows of
their WeChat accounts. Read from the tables' metadata, so a new table with a
`member_id` is exported without a change here.

Erasure (`erase_member`), one transaction:

- kept, without personal data: the ledger, lots, vouchers, purchases and their items
  (amounts a store must keep for its accounts and tax), tier changes, assignments, card
  applications (without the mailing address), outbox messages (kind, state, times —
  without text and address), consent events (action, channel and time — the proof
  that a stop was honoured — without the address and the words);
- removed: the member's name, phone (replaced by `erased:<id>`), gender, birthday,
  wedding day, preferred time, card number, address, language; their channel
  identities (phones, WeChat openids), pending confirmations, binding codes, the texts
  and address of their conversations with the store (the threads' times, authors and
  states are kept), and the
  inbound de-duplication rows of their addresses or carrying their name or phone in
  the stored reply (a retry log kept for days: removing it only means a very late
  retry would be answered afresh);
- the member is marked stopped, so nothing proactive is ever planned for the row.

Erasing again finds no member by the phone and changes nothing (idempotent).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import String, cast, delete, literal, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables.cards import CardApplication, CardEvent
from models.tables.conversation import BindCode, PendingAction
from models.tables.inbound import InboundMessage
from models.tables.inbox import Conversation, ConversationMessage
from models.tables.members import ConsentEvent, Identity, Member
from models.tables.outbox import OutboxEvent, OutboxMessage
from models.tables.purchases import Purchase, PurchaseItem
from models.tables.schema import METADATA

ERASED_PREFIX = "erased:"

_PERSONAL = dict(
    name="", gender=None, birthday_year=None, birthday_month=None, birthday_day=None,
    birthday_calendar="solar", birthday_leap_month=False, wedding_year=None,
    wedding_month=None, wedding_day=None, preferred_contact=None, card_no=None,
    address=None, locale=None, stopped=True,
)  # fmt: skip
"""The member row's personal columns and what erasure leaves in them."""


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _rows(result) -> list[dict]:
    return [{k: _plain(v) for k, v in row._mapping.items()} for row in result]


async def _addresses(session: AsyncSession, member_id: int) -> list[tuple[str, str]]:
    stmt = select(Identity.channel, Identity.address).where(Identity.member_id == member_id)
    return [(c, a) for c, a in (await session.exec(stmt)).all()]


def _inbound_of(addresses: list[tuple[str, str]], member: Member):
    """The inbound log rows of the member's WeChat accounts, or whose stored reply names
    them (SMS rows are keyed by the provider's message id, not the phone)."""
    keys = [
        InboundMessage.dedupe_key.like(f"{kind}:{address}:%")
        for channel, address in addresses
        if channel == "wechat"
        for kind in ("msg", "evt")
    ]
    keys.append(InboundMessage.reply_text.contains(member.phone))
    if len(member.name) >= 2:
        keys.append(InboundMessage.reply_text.contains(member.name))
    return or_(*keys)


async def export_member(session: AsyncSession, member: Member) -> dict:
    """Everything held about `member`, as JSON-ready data."""
    document: dict = {"member": _rows(await session.exec(select(Member.__table__).where(
        Member.id == member.id)))[0]}  # fmt: skip
    for table in METADATA.sorted_tables:
        if table.name != "members" and "member_id" in table.c:
            stmt = select(table).where(table.c.member_id == member.id)
            document[table.name] = _rows(await session.exec(stmt))
    purchases = select(Purchase.id).where(Purchase.member_id == member.id)
    applications = select(CardApplication.id).where(CardApplication.member_id == member.id)
    messages = select(OutboxMessage.id).where(OutboxMessage.member_id == member.id)
    threads = select(Conversation.id).where(Conversation.member_id == member.id)
    for table, column, ids in (
        (ConversationMessage.__table__, ConversationMessage.conversation_id, threads),
        (PurchaseItem.__table__, PurchaseItem.purchase_id, purchases),
        (CardEvent.__table__, CardEvent.application_id, applications),
        (OutboxEvent.__table__, OutboxEvent.message_id, messages),
    ):
        document[table.name] = _rows(await session.exec(select(table).where(column.in_(ids))))
    addresses = await _addresses(session, member.id)
    stmt = select(InboundMessage.__table__).where(_inbound_of(addresses, member))
    document["inbound_messages"] = _rows(await session.exec(stmt))
    return document


def export_json(document: dict) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True)


async def erase_member(session: AsyncSession, member: Member, *, now: datetime) -> dict[str, int]:
    """Remove `member`'s personal data (see the module's docstring); counts by table."""
    member_id = member.id
    addresses = await _addresses(session, member_id)
    senders = [address for _, address in addresses] + [member.phone]
    openids = [address for channel, address in addresses if channel == "wechat"]
    counts: dict[str, int] = {}

    async def run(name: str, stmt) -> None:
        counts[name] = counts.get(name, 0) + (await session.exec(stmt)).rowcount

    await run("inbound_messages", delete(InboundMessage).where(_inbound_of(addresses, member)))
    await run("pending_actions", delete(PendingAction).where(PendingAction.sender.in_(senders)))
    await run("bind_codes", delete(BindCode).where(
        or_(BindCode.member_id == member_id, BindCode.phone == member.phone,
            BindCode.openid.in_(openids))))  # fmt: skip
    await run("consent_events", update(ConsentEvent).where(
        or_(ConsentEvent.member_id == member_id, ConsentEvent.address.in_(senders))
    ).values(address=None, source=""))  # fmt: skip
    threads = select(Conversation.id).where(
        or_(Conversation.member_id == member_id, Conversation.address.in_(senders))
    )
    await run("conversation_messages", update(ConversationMessage).where(
        ConversationMessage.conversation_id.in_(threads)).values(text=""))  # fmt: skip
    await run("conversations", update(Conversation).where(Conversation.id.in_(threads)).values(
        address="", thread_key=literal(ERASED_PREFIX) + cast(Conversation.id, String)))  # fmt: skip
    await run("identities", delete(Identity).where(Identity.member_id == member_id))
    await run("outbox", update(OutboxMessage).where(OutboxMessage.member_id == member_id)
              .values(text="", address=""))  # fmt: skip
    await run("card_applications", update(CardApplication).where(
        CardApplication.member_id == member_id).values(mail_address=None))  # fmt: skip
    await run("members", update(Member).where(Member.id == member_id).values(
        phone=f"{ERASED_PREFIX}{member_id}", updated_at=now, **_PERSONAL))  # fmt: skip
    return counts
