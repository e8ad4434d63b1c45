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
- A stop sent from the phone number or the openid before it was a member's is
  applied when it joins (`models.consent.adopt_address`).
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cards, consent, ownership
from models.db import insert_ignore
from models.errors import Conflict, InvalidInput
from models.identities import activate_wechat, deactivate_wechat
from models.phone import mask_phone, normalise_phone
from models.rules import LoyaltyRules
from models.stores import get_assistant, get_store
from models.tables.cards import CardApplication
from models.tables.members import Assistant, Identity, Member, Store
from models.types import utcnow

log = logging.getLogger("memberbot.members")

_DAY = re.compile(r"^(?:([0-9]{4})-)?([0-9]{2})-([0-9]{2})$")
_CONTACT = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
_GENDERS = {"M": "M", "F": "F", "m": "M", "f": "F", "男": "M", "女": "F"}

Code = Annotated[str, Field(min_length=1, max_length=64)]
Calendar = Literal["solar", "lunar"]


def parse_day(value: str) -> tuple[int | None, int, int]:
    """'05-20' → (None, 5, 20); '1990-05-20' → (1990, 5, 20). Format only."""
    m = _DAY.match(value)
    if not m:
        raise ValueError("expected MM-DD or YYYY-MM-DD")
    return (int(m.group(1)) if m.group(1) else None), int(m.group(2)), int(m.group(3))


def check_day(year: int | None, month: int, day: int, calendar: str) -> None:
    """Raise ValueError unless (year, month, day) is a possible date in `calendar`."""
    if year is not None and year < 1900:
        raise ValueError("year before 1900")
    if calendar == "lunar":
        if not (1 <= month <= 12 and 1 <= day <= 30):
            raise ValueError("a lunar date has month 1-12 and day 1-30")
        return
    try:
        date(year or 2000, month, day)  # 2000 is a leap year: 02-29 is a valid birthday
    except ValueError:
        raise ValueError("no such date") from None


def format_day(year: int | None, month: int | None, day: int | None) -> str | None:
    if month is None or day is None:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}"


class MemberIn(BaseModel):
    """The member JSON of CONTRACT.md (plus `address`, `locale`, `birthday_leap_month`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str
    name: Annotated[str, Field(max_length=100)] | None = None
    gender: Literal["M", "F"] | None = None
    birthday_calendar: Calendar | None = None
    """None: not given (a new member's birthday is solar; an update keeps the one on file).
    Declared before `birthday` so that the birthday validator can see it."""
    birthday_leap_month: StrictBool = False
    birthday: str | None = None
    wedding_anniversary: str | None = None
    store: Code | None = None
    assistant: Code | None = None
    card_no: Code | None = None
    preferred_contact: str | None = None
    wechat_openid: Code | None = None
    address: Annotated[str, Field(max_length=300)] | None = None
    locale: Literal["zh_CN", "en"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        try:
            return normalise_phone(v)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("gender", mode="before")
    @classmethod
    def _gender(cls, v: Any) -> Any:
        return _GENDERS.get(v.strip(), v) if isinstance(v, str) else v

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None:
            year, month, day = parse_day(v)
            calendar = info.data.get("birthday_calendar")
            if calendar is not None:
                check_day(year, month, day, calendar)
            else:  # possible in one calendar at least; `upsert_member` settles which
                try:
                    check_day(year, month, day, "solar")
                except ValueError:
                    check_day(year, month, day, "lunar")
        return v

    @field_validator("wedding_anniversary")
    @classmethod
    def _wedding(cls, v: str | None) -> str | None:
        if v is not None:
            check_day(*parse_day(v), "solar")
        return v

    @field_validator("preferred_contact")
    @classmethod
    def _contact(cls, v: str | None) -> str | None:
        if v is not None and not _CONTACT.match(v):
            raise ValueError("expected HH:MM-HH:MM")
        return v

    @field_validator("store", "assistant", "name", "birthday_calendar", "birthday_leap_month")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("may be changed but not cleared")
        return v


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


async def _get_or_create(
    session: AsyncSession, *, phone: str, today: date, entry_tier: str
) -> tuple[Member, bool]:
    """INSERT … ON CONFLICT DO NOTHING, then load: two simultaneous enrolments of one
    phone make one member (the later one sees the earlier one's row)."""
    table = Member.__table__
    new = Member(phone=phone, join_date=today, tier=entry_tier, tier_since=today)
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


def _apply_plain_fields(member: Member, data: MemberIn, fields: set[str]) -> None:
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


async def _settle_store(
    session: AsyncSession, *, member: Member, store: Store | None, assistant: Assistant | None
) -> None:
    """Apply store and assistant; the assistant must work at the member's store.

    Checked only when one of them is given: an owner taken over through a sale served
    by a floating assistant of another store (`models.ownership.on_purchase`) does not
    block unrelated updates."""
    if store is None and assistant is None:
        return
    if store is not None:
        member.store_id = store.id
    if assistant is not None and member.store_id is None:
        member.store_id = assistant.store_id
    current = assistant
    if current is None and member.assistant_id is not None:
        current = await session.get(Assistant, member.assistant_id)
    if current is not None and current.store_id != member.store_id:
        raise InvalidInput(
            f"assistant {current.code!r} does not work at the member's store", "assistant"
        )


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

    member, created = await _get_or_create(
        session, phone=data.phone, today=today, entry_tier=rules.tiers.entry.code
    )
    previous_assistant = member.assistant_id
    _apply_plain_fields(member, data, fields)
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


async def apply_for_card(
    session: AsyncSession,
    *,
    rules: LoyaltyRules,
    member: Member,
    tier: str,
    actor: str,
    now: datetime,
) -> tuple[CardApplication, bool]:
    """Staff apply for a card for a member who has reached (or is eligible for) `tier`
    (DOMAIN.md §3 Scheme B: the assistant fills the application; 003 flags eligible
    members who have not applied). Returns (application, created); an application
    already under way for that tier is returned as it is.

    Unknown tier or a tier without a card → InvalidInput (field "tier"); a tier above
    both the member's tier and their eligible tier → Conflict (field "tier").
    """
    level = rules.tiers.find(tier)
    if level is None:
        raise InvalidInput(f"unknown tier {tier!r}", "tier")
    if not level.requires_card:
        raise InvalidInput(f"tier {tier!r} has no card to apply for", "tier")
    existing = (
        await session.exec(
            select(CardApplication).where(
                CardApplication.member_id == member.id,
                CardApplication.tier == tier,
                col(CardApplication.status).in_(cards.ACTIVE),
            )
        )
    ).first()
    if existing is not None:
        return existing, False
    index = rules.tiers.index
    reached = max(index(member.tier), index(member.eligible_tier) if member.eligible_tier else 0)
    if index(tier) > reached:
        raise Conflict(f"the member is not eligible for tier {tier!r}", "tier")
    app = await cards.open_application(
        session, member=member, tier=tier, actor=actor, now=now, rules=rules
    )
    return app, True


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


async def card_applications(session: AsyncSession, *, member_id: int) -> list[CardApplication]:
    """The member's card applications, oldest first."""
    rows = await session.exec(
        select(CardApplication)
        .where(CardApplication.member_id == member_id)
        .order_by(CardApplication.id)
    )
    return list(rows.all())


async def bad_number(session: AsyncSession, *, phone: str) -> bool:
    """The SMS provider said the number cannot receive (Twilio 21211 / 21614)."""
    stmt = select(Identity.bad).where(Identity.channel == "sms", Identity.address == phone)
    return bool((await session.exec(stmt)).first())
