"""New members of a member sheet created in bulk (`create_members`): the rows
`upsert_member` writes for a phone it does not know — the member (`joining`,
`joined_on`, `apply_plain_fields`, `place`), the phone's SMS identity and, with an
assistant, the assignment opened (`ownership.new_assignment`).

Left to `upsert_member`, in order: a WeChat openid (its identity may belong to someone
else), a card number already held or given twice in the batch, a phone whose address
has an identity or consent events already (a stop sent before joining is adopted),
unknown or inactive store and assistant, and whatever its rules refuse (a future join
date, an impossible birthday, an assistant of another store) — `upsert_member` then
rejects it with its own message.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from types import SimpleNamespace

from sqlalchemy import select, text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.bulk.pipeline import Turn
from models.bulk.state import Ids, existing, member_defaults, shops
from models.bulk.write import Writer
from models.errors import DomainError
from models.member_input import MemberIn
from models.members import apply_plain_fields, joined_on, joining, place
from models.ownership import OPENED, new_assignment
from models.rules import LoyaltyRules
from models.tables.members import Assignment, ConsentEvent, Identity, Member
from models.types import utcnow

MEMBERS = Member.__table__
COLUMNS = tuple(c.name for c in MEMBERS.columns)


async def _sms_identities(session: AsyncSession, phones: set[str]) -> set[str]:
    """The phones among `phones` with an SMS identity. On PostgreSQL one index look-up per
    phone, whatever the statistics (`unnest` joined to the unique (channel, address)
    index): with `address IN (…500 values…)` a planner without statistics scanned every
    SMS identity and compared each with every value (~0.1 s per batch at 20,000)."""
    if not phones:
        return set()
    if session.bind.dialect.name == "postgresql":
        stmt = text(
            "SELECT i.address FROM unnest(CAST(:phones AS text[])) AS p(address)"
            " JOIN identities i ON i.channel = 'sms' AND i.address = p.address"
        )
        return set((await session.exec(stmt, params={"phones": list(phones)})).scalars())
    c = Identity.__table__.c
    found = select(c.address).where(c.channel == "sms", c.address.in_(phones))
    return set((await session.exec(found)).scalars())


async def create_members(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    records: list[MemberIn],
    today: date,
    turn: Turn | None = None,
) -> list[int]:
    """Create the members of `records` (phones not stored, each once) in the caller's
    transaction; the indexes of the records left to `upsert_member` (module docstring).
    With a `turn`, the rows are written once the previous batch is settled (read and
    prepared meanwhile)."""
    stores, assistants = await shops(session)
    phones = {d.phone for d in records}
    known = await _sms_identities(session, phones)
    known |= await existing(session, ConsentEvent.__table__.c.address, phones)
    cards = Counter(d.card_no for d in records if d.card_no is not None)
    held = await existing(session, MEMBERS.c.card_no, set(cards))
    ids = Ids(session, block=len(records))
    now = utcnow()
    defaults = member_defaults(now)
    members, identities, assignments, left = [], [], [], []
    for i, d in enumerate(records):
        fields = d.model_fields_set
        store = stores.get(d.store) if "store" in fields else None
        assistant = assistants.get(d.assistant) if "assistant" in fields else None
        if (
            "wechat_openid" in fields
            or d.phone in known
            or (d.card_no is not None and (cards[d.card_no] > 1 or d.card_no in held))
            or ("store" in fields and store is None)
            or ("assistant" in fields and (assistant is None or not assistant.active))
            or (d.join_date is not None and d.join_date > today)
        ):
            left.append(i)
            continue
        member = SimpleNamespace(
            **(defaults | joining(phone=d.phone, today=today, entry_tier=rules.tiers.entry.code))
        )
        joined_on(member, d)
        try:
            apply_plain_fields(member, d, set(fields))
            if store is not None or assistant is not None:
                place(member, store=store, assistant=assistant, current=assistant)
        except DomainError:
            left.append(i)
            continue
        member.id = await ids.next("members")
        if assistant is not None:
            member.assistant_id = assistant.id
            assignments.append(
                new_assignment(rules, member.id, assistant.id, on=today, reason=OPENED)
                | dict(established=False, ended_on=None, end_reason=None)
            )
        members.append({name: getattr(member, name) for name in COLUMNS})
        identities.append(
            dict(
                member_id=member.id,
                channel="sms",
                address=d.phone,
                active=True,
                bad=False,
                bad_reason=None,
                last_inbound_at=None,
                created_at=now,
            )
        )
    writer = await Writer.of(session)
    steps = [
        writer.insert(MEMBERS, members),
        writer.insert(Identity.__table__, identities),
        writer.insert(Assignment.__table__, assignments),
    ]
    if turn is not None:
        await turn.after_previous()
    await writer.run(steps)
    return left
