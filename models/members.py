"""Members: the member record, created or updated from the member JSON (DOMAIN.md §1).

The phone number is the member's key: `upsert_member` creates the member with
that phone or updates the fields present in the input, and nothing else. The
minimum record of DOMAIN.md §1 (name, phone, birth month and day) is what staff
should collect, but only the phone is required here so that a till can enrol a
buyer at once and the sheet can be completed later.

Input rules:
- `birthday`/`wedding_anniversary`: `MM-DD` or `YYYY-MM-DD`; a solar date must
  exist (02-29 is allowed without a year); a lunar date has month 1-12, day 1-30
  (many members keep a lunar birthday, DOMAIN.md §7 rule 5).
- A blank string means "not given"; `null` clears an optional field. The store
  and the assistant can be changed but not cleared.
- The assistant must work at the member's store (the one given, else the one on
  file; a member without a store takes the assistant's). A new or different
  assistant is recorded through `models.ownership.assign` (DOMAIN.md §8).
- `card_no` and `wechat_openid` belong to one member each (409 otherwise).
- `join_date` (default: the day the member is created; never in the future) can be
  set and corrected; anniversaries of joining count from it.
- A stop sent from the phone number or the openid before it was a member's is
  applied when it joins (`models.consent.adopt_address`).

The input (`MemberIn`) and the day helpers are in `models.member_input`; card
applications made by staff in `models.member_cards`.
"""

from __future__ import annotations

import logging
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import consent, ownership
from models.db import insert_ignore
from models.errors import Conflict, InvalidInput
from models.identities import activate_wechat, deactivate_wechat
from models.member_input import MemberIn, check_day, parse_day
from models.phone import mask_phone, normalise_phone
from models.rules import LoyaltyRules
from models.stores import get_assistant, get_store
from models.tables.members import Assistant, Identity, Member, Store
from models.types import utcnow

log = logging.getLogger("memberbot.members")


# --------------------------------------------------------------------------- lookups


async def get_member_by_phone(session: AsyncSession, *, phone: str) -> Member | None:
    """The member with this phone (any accepted spelling). Invalid phone → InvalidInput."""
    phone = normalise_phone(phone)
    return (await session.exec(select(Member).where(Member.phone == phone))).first()


# --------------------------------------------------------------------------- writing


def _row(obj) -> dict:
    """Column values of a not-yet-inserted SQLModel object, for a Core INSERT."""
    return {c.name: getattr(obj, c.name) for c in obj.__table__.columns if c.name != "id"}


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name


def joining(*, phone: str, today: date, entry_tier: str) -> dict:
    """The values a member created `today` starts with (entry tier from today; `joined_on`
    then applies the sheet's join date)."""
    return dict(phone=phone, join_date=today, tier=entry_tier, tier_since=today)


def joined_on(member: Member, data: MemberIn) -> None:
    """A member created with a given join date holds the entry tier since that day."""
    if data.join_date is not None:
        member.tier_since = data.join_date


async def _get_or_create(
    session: AsyncSession, *, phone: str, today: date, entry_tier: str
) -> tuple[Member, bool]:
    """INSERT … ON CONFLICT DO NOTHING, then load: two simultaneous enrolments of one
    phone make one member (the later one sees the earlier one's row)."""
    table = Member.__table__
    new = Member(**joining(phone=phone, today=today, entry_tier=entry_tier))
    stmt = (
        insert_ignore(_dialect(session), table)
        .values(**_row(new))
        .on_conflict_do_nothing(index_elements=["phone"])
        .returning(table.c.id)
    )
    created = (await session.exec(stmt)).first() is not None
    member = (await session.exec(select(Member).where(Member.phone == phone))).one()
    return member, created


async def _identity(
    session: AsyncSession,
    *,
    member: Member,
    channel: str,
    address: str,
    field: str,
    owner: int | None,
    authoritative: bool = False,
) -> Identity:
    """The identity (channel, address), created as `owner`'s if new. An address actively
    bound to another member than `member` raises Conflict on `field`, unless
    `authoritative` (the member's own phone number: whoever has the number on file owns
    its SMS identity)."""
    table = Identity.__table__
    stmt = (
        insert_ignore(_dialect(session), table)
        .values(**_row(Identity(member_id=owner, channel=channel, address=address)))
        .on_conflict_do_nothing(index_elements=["channel", "address"])
    )
    await session.exec(stmt)
    ident = (
        await session.exec(
            select(Identity).where(Identity.channel == channel, Identity.address == address)
        )
    ).one()
    if ident.member_id not in (None, member.id) and ident.active and not authoritative:
        raise Conflict(f"this {channel} address belongs to another member", field)
    return ident


async def _bind_phone(session: AsyncSession, *, member: Member) -> None:
    """Make the member's phone number an active SMS identity of theirs."""
    ident = await _identity(
        session,
        member=member,
        channel="sms",
        address=member.phone,
        field="phone",
        owner=member.id,
        authoritative=True,
    )
    if ident.member_id == member.id and ident.active:
        return
    ident.member_id, ident.active = member.id, True
    session.add(ident)


async def _set_openid(session: AsyncSession, *, member: Member, openid: str | None) -> None:
    """The member's WeChat account is `openid` (None: none), as the one active WeChat
    identity of the member (`models.identities`)."""
    if openid is None:
        await deactivate_wechat(session, member_id=member.id)
        return
    ident = await _identity(
        session, member=member, channel="wechat", address=openid, field="wechat_openid", owner=None
    )
    if not await activate_wechat(session, identity=ident, member_id=member.id):
        # another WeChat account bound to the member meanwhile
        raise Conflict("the member's WeChat account changed meanwhile", "wechat_openid")


def apply_plain_fields(member: Member, data: MemberIn, fields: set[str]) -> None:
    if "name" in fields:
        member.name = data.name
    if "gender" in fields:
        member.gender = data.gender
    if "birthday" in fields:
        b = parse_day(data.birthday) if data.birthday else (None, None, None)
        member.birthday_year, member.birthday_month, member.birthday_day = b
    if data.birthday_calendar is not None:
        member.birthday_calendar = data.birthday_calendar
    if "birthday_leap_month" in fields:
        member.birthday_leap_month = data.birthday_leap_month
    if "wedding_anniversary" in fields:
        w = parse_day(data.wedding_anniversary) if data.wedding_anniversary else (None, None, None)
        member.wedding_year, member.wedding_month, member.wedding_day = w
    if "join_date" in fields:
        member.join_date = data.join_date
    for name in ("card_no", "preferred_contact", "address", "locale"):
        if name in fields:
            setattr(member, name, getattr(data, name))
    settled = member.birthday_month is not None and member.birthday_day is not None
    if settled and fields & {"birthday", "birthday_calendar"}:
        try:
            check_day(
                member.birthday_year,
                member.birthday_month,
                member.birthday_day,
                member.birthday_calendar,
            )
        except ValueError as exc:
            raise InvalidInput(f"{exc} ({member.birthday_calendar} calendar)", "birthday") from None


def place(member: Member, *, store, assistant, current) -> None:
    """Apply store and assistant (rows with `id`, `store_id`, `code`); `current`, the
    member's assistant after the change, must work at the member's store."""
    if store is not None:
        member.store_id = store.id
    if assistant is not None and member.store_id is None:
        member.store_id = assistant.store_id
    if current is not None and current.store_id != member.store_id:
        raise InvalidInput(
            f"assistant {current.code!r} does not work at the member's store", "assistant"
        )


async def _settle_store(
    session: AsyncSession, *, member: Member, store: Store | None, assistant: Assistant | None
) -> None:
    """Apply store and assistant; the assistant must work at the member's store.

    Checked only when one of them is given: an owner taken over through a sale served
    by a floating assistant of another store (`models.ownership.on_purchase`) does not
    block unrelated updates."""
    if store is None and assistant is None:
        return
    current = assistant
    if current is None and member.assistant_id is not None:
        current = await session.get(Assistant, member.assistant_id)
    place(member, store=store, assistant=assistant, current=current)


async def upsert_member(
    session: AsyncSession, *, rules: LoyaltyRules, tz: ZoneInfo, data: MemberIn, today: date
) -> tuple[Member, bool]:
    """Create the member `data.phone` (joining `today`, entry tier) or update the fields
    present in `data`. Returns (member, created). `tz` (the brand's timezone) is taken for
    the same shape as the other domain calls; the only date needed arrives as `today`."""
    fields = set(data.model_fields_set)
    store = assistant = None
    if "store" in fields:
        store = await get_store(session, code=data.store)
        if store is None:
            raise InvalidInput(f"unknown store {data.store!r}", "store")
    if "assistant" in fields:
        assistant = await get_assistant(session, code=data.assistant)
        if assistant is None:
            raise InvalidInput(f"unknown assistant {data.assistant!r}", "assistant")
    if data.card_no is not None and "card_no" in fields:
        holder = (
            await session.exec(select(Member.phone).where(Member.card_no == data.card_no))
        ).first()
        if holder is not None and holder != data.phone:
            raise Conflict("card number already belongs to another member", "card_no")

    if data.join_date is not None and data.join_date > today:
        raise InvalidInput("the join date cannot be in the future", "join_date")
    member, created = await _get_or_create(
        session, phone=data.phone, today=today, entry_tier=rules.tiers.entry.code
    )
    if created:
        joined_on(member, data)
    previous_assistant = member.assistant_id
    apply_plain_fields(member, data, fields)
    await _settle_store(session, member=member, store=store, assistant=assistant)
    if assistant is not None:
        member.assistant_id = assistant.id
    member.updated_at = utcnow()
    session.add(member)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:  # a card number taken by a concurrent request
        raise Conflict("card number already belongs to another member", "card_no") from None

    await _bind_phone(session, member=member)
    # A stop sent from this number before it was a member's applies now (models.consent).
    await consent.adopt_address(session, member=member, address=member.phone)
    if "wechat_openid" in fields:
        await _set_openid(session, member=member, openid=data.wechat_openid)
    if "wechat_openid" in fields and data.wechat_openid is not None:
        await consent.adopt_address(session, member=member, address=data.wechat_openid)
    if assistant is not None and assistant.id != previous_assistant:
        await ownership.assign(
            session,
            rules=rules,
            member=member,
            assistant_id=assistant.id,
            on=today,
            reason="opened" if created else "manual",
        )
    await session.flush()
    log.debug("member %s %s", mask_phone(member.phone), "created" if created else "updated")
    return member, created


# --------------------------------------------------------------------------- reading


async def get_member(session: AsyncSession, *, member_id: int) -> Member | None:
    return await session.get(Member, member_id)


async def phones(session: AsyncSession, *, member_ids: set[int | None]) -> dict[int, str]:
    """Member id → phone, for the ids given (one query)."""
    ids = {i for i in member_ids if i is not None}
    if not ids:
        return {}
    rows = await session.exec(select(Member.id, Member.phone).where(col(Member.id).in_(ids)))
    return dict(rows.all())


async def bad_number(session: AsyncSession, *, phone: str) -> bool:
    """The SMS provider said the number cannot receive (Twilio 21211 / 21614)."""
    stmt = select(Identity.bad).where(Identity.channel == "sms", Identity.address == phone)
    return bool((await session.exec(stmt)).first())
