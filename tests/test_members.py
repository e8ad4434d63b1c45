"""Members, stores/assistants and consent at the domain level (models/members.py,
models/stores.py, models/consent.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlmodel import select

from bot.api.views import member_view
from models import consent, stores
from models.db import transaction
from models.errors import Conflict, InvalidInput
from models.member_cards import apply_for_card
from models.member_input import MemberIn
from models.members import get_member_by_phone, upsert_member
from models.rules import LoyaltyRules
from models.tables.members import Assignment, Assistant, ConsentEvent, Identity, Member
from tests.factories import make_assistant, make_member, make_store

TZ = ZoneInfo("Asia/Shanghai")
RULES = LoyaltyRules()
TODAY = date(2026, 3, 10)
PHONE = "+8613800138000"
AT = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)


async def upsert(session, today: date = TODAY, **fields):
    fields.setdefault("phone", PHONE)
    return await upsert_member(
        session, rules=RULES, tz=TZ, data=MemberIn.model_validate(fields), today=today
    )


def field_of(exc: ValidationError) -> str:
    return ".".join(str(p) for p in exc.errors()[0]["loc"])


# --------------------------------------------------------------------------- MemberIn


def test_phone_is_normalised():
    assert MemberIn(phone="138 0013 8000").phone == PHONE
    assert MemberIn(phone="+86 138-0013-8000").phone == PHONE


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"phone": "12345"}, "phone"),
        ({"phone": 13800138000}, "phone"),
        ({}, "phone"),
        ({"phone": PHONE, "gender": "X"}, "gender"),
        ({"phone": PHONE, "birthday": "1990/05/20"}, "birthday"),
        ({"phone": PHONE, "birthday": "13-01"}, "birthday"),
        ({"phone": PHONE, "birthday": "02-30", "birthday_calendar": "solar"}, "birthday"),
        ({"phone": PHONE, "birthday": "1990-02-29", "birthday_calendar": "solar"}, "birthday"),
        ({"phone": PHONE, "birthday": "02-31", "birthday_calendar": "lunar"}, "birthday"),
        ({"phone": PHONE, "birthday_calendar": "julian"}, "birthday_calendar"),
        ({"phone": PHONE, "wedding_anniversary": "02-30"}, "wedding_anniversary"),
        ({"phone": PHONE, "preferred_contact": "7pm"}, "preferred_contact"),
        ({"phone": PHONE, "preferred_contact": "19:00-25:00"}, "preferred_contact"),
        ({"phone": PHONE, "locale": "fr"}, "locale"),
        ({"phone": PHONE, "store": None}, "store"),
        ({"phone": PHONE, "name": 5}, "name"),
        ({"phone": PHONE, "nickname": "x"}, "nickname"),
    ],
)
def test_member_input_is_checked(fields, field):
    with pytest.raises(ValidationError) as info:
        MemberIn.model_validate(fields)
    assert field_of(info.value) == field


def test_member_input_accepts_the_contract_spellings():
    m = MemberIn.model_validate(
        {
            "phone": "13800138000",
            "gender": "女",
            "birthday": "02-29",
            "wedding_anniversary": "2010-10-01",
            "preferred_contact": "19:00-24:00",
        }
    )
    assert (m.gender, m.birthday, m.wedding_anniversary) == ("F", "02-29", "2010-10-01")
    assert MemberIn(phone=PHONE, gender="男").gender == "M"
    assert MemberIn(phone=PHONE, birthday="02-30", birthday_calendar="lunar").birthday == "02-30"
    assert MemberIn(phone=PHONE, birthday="1990-12-30", birthday_calendar="lunar")


def test_blank_strings_count_as_absent():
    m = MemberIn.model_validate({"phone": PHONE, "name": "", "card_no": "  "})
    assert m.model_fields_set == {"phone"}


# --------------------------------------------------------------------------- upsert


async def test_create_then_update_only_the_given_fields(sessions):
    async with transaction(sessions) as s:
        member, created = await upsert(s, name="张三", birthday="05-20", card_no="C1")
        assert created
        assert (member.join_date, member.tier, member.name) == (TODAY, "points", "张三")
        assert (member.birthday_year, member.birthday_month, member.birthday_day) == (None, 5, 20)
    async with transaction(sessions) as s:
        member, created = await upsert(s, today=date(2026, 4, 1), phone="13800138000", gender="F")
        assert not created
        assert (member.name, member.gender, member.card_no) == ("张三", "F", "C1")
        assert member.join_date == TODAY
    async with transaction(sessions) as s:
        member, _ = await upsert(s, card_no=None, birthday="1990-05-21")
        assert member.card_no is None
        assert (member.birthday_year, member.birthday_month, member.birthday_day) == (1990, 5, 21)
        idents = (await s.exec(select(Identity))).all()
        assert [(i.channel, i.address, i.member_id) for i in idents] == [("sms", PHONE, member.id)]


async def test_solar_birthday_must_exist_in_the_calendar_on_file(sessions):
    async with transaction(sessions) as s:
        await upsert(s, birthday="02-30", birthday_calendar="lunar")
    async with transaction(sessions) as s:
        with pytest.raises(InvalidInput) as info:
            await upsert(s, birthday_calendar="solar")  # the lunar 02-30 on file is no solar date
        assert info.value.field == "birthday"
    with pytest.raises(InvalidInput) as info:
        async with transaction(sessions) as s:
            await upsert(s, phone="13900139000", birthday="02-30")
    assert info.value.field == "birthday"


async def test_store_and_assistant_rules(sessions):
    async with transaction(sessions) as s:
        s1 = await make_store(s, code="S1")
        s2 = await make_store(s, code="S2")
        await make_assistant(s, store=s1, code="A1")
        await make_assistant(s, store=s2, code="A2")
    for fields, field in [
        ({"store": "NOPE"}, "store"),
        ({"assistant": "NOPE"}, "assistant"),
        ({"store": "S1", "assistant": "A2"}, "assistant"),
    ]:
        with pytest.raises(InvalidInput) as info:
            async with transaction(sessions) as s:
                await upsert(s, **fields)
        assert info.value.field == field
    async with transaction(sessions) as s:
        assert await get_member_by_phone(s, phone=PHONE) is None  # nothing half-written
        member, _ = await upsert(s, assistant="A1")  # no store given: the assistant's
        assert member.store_id == s1.id
    with pytest.raises(InvalidInput) as info:  # moving store while keeping A1
        async with transaction(sessions) as s:
            await upsert(s, store="S2")
    assert info.value.field == "assistant"
    async with transaction(sessions) as s:
        member, _ = await upsert(s, store="S2", assistant="A2")
        assert member.store_id == s2.id


async def test_an_owner_from_another_store_does_not_block_other_updates(sessions):
    async with transaction(sessions) as s:
        s1 = await make_store(s, code="S1")
        floater = await make_assistant(s, store=await make_store(s, code="S2"), code="F")
        await make_member(s, store=s1, assistant=floater)  # owned after a sale F served
    async with transaction(sessions) as s:
        member, created = await upsert(s, name="新名字")
        assert not created and member.assistant_id == floater.id


async def test_the_phone_owner_takes_its_sms_identity(sessions):
    async with transaction(sessions) as s:
        other = await make_member(s, phone="+8613900139000")
        s.add(Identity(member_id=other.id, channel="sms", address=PHONE))  # stale
    async with transaction(sessions) as s:
        member, created = await upsert(s)
        ident = (await s.exec(select(Identity).where(Identity.address == PHONE))).one()
        assert created and ident.member_id == member.id


async def test_a_new_or_changed_assistant_is_an_ownership_assignment(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        a1 = await make_assistant(s, store=store, code="A1")
        a2 = await make_assistant(s, store=store, code="A2")
        member, _ = await upsert(s, store="S001", assistant="A1")
    async with transaction(sessions) as s:
        await upsert(s, today=date(2026, 3, 11), name="again", assistant="A1")  # unchanged
    async with transaction(sessions) as s:
        await upsert(s, today=date(2026, 3, 12), assistant="A2")
    async with transaction(sessions) as s:
        rows = (await s.exec(select(Assignment).order_by(Assignment.id))).all()
        got = [(r.assistant_id, r.reason, r.start_on, r.ended_on) for r in rows]
        assert got == [
            (a1.id, "opened", TODAY, date(2026, 3, 12)),
            (a2.id, "manual", date(2026, 3, 12), None),
        ]
        assert (await s.get(Member, member.id)).assistant_id == a2.id


async def test_card_number_belongs_to_one_member(sessions):
    async with transaction(sessions) as s:
        await upsert(s, card_no="C1")
    async with transaction(sessions) as s:
        await upsert(s, card_no="C1")  # the holder may send it again
    with pytest.raises(Conflict) as info:
        async with transaction(sessions) as s:
            await upsert(s, phone="13900139000", card_no="C1")
    assert info.value.field == "card_no"
    async with transaction(sessions) as s:
        assert await get_member_by_phone(s, phone="13900139000") is None


async def test_wechat_openid_binding(sessions):
    async with transaction(sessions) as s:
        first, _ = await upsert(s, wechat_openid="o-1")
        s.add(Identity(channel="wechat", address="o-unbound"))  # wrote before enrolling
    with pytest.raises(Conflict) as info:
        async with transaction(sessions) as s:
            await upsert(s, phone="13900139000", wechat_openid="o-1")
    assert info.value.field == "wechat_openid"
    async with transaction(sessions) as s:
        await upsert(s, wechat_openid="o-2")
        second, _ = await upsert(s, phone="13900139000", wechat_openid="o-1")  # o-1 is free now
        await upsert(s, phone="13700137000", wechat_openid="o-unbound")
    async with transaction(sessions) as s:
        rows = (await s.exec(select(Identity).where(Identity.channel == "wechat"))).all()
        active = {i.address: i.member_id for i in rows if i.active}
        assert active["o-2"] == first.id and active["o-1"] == second.id
        assert active["o-unbound"] is not None
        view = await member_view(s, rules=RULES, tz=TZ, member=first, today=TODAY)
        assert view["wechat_openid"] == "o-2"
        await upsert(s, wechat_openid=None)
        view = await member_view(s, rules=RULES, tz=TZ, member=first, today=TODAY)
        assert view["wechat_openid"] is None


async def test_simultaneous_creates_of_one_phone_make_one_member(sessions):
    async def create(name: str):
        async with transaction(sessions) as s:
            _member, created = await upsert(s, name=name)
            return created

    results = await asyncio.gather(*(create(f"n{i}") for i in range(4)))
    assert sorted(results) == [False, False, False, True]
    async with transaction(sessions) as s:
        assert len((await s.exec(select(Member))).all()) == 1


# --------------------------------------------------------------------------- view


async def test_member_view_shape(sessions):
    async with transaction(sessions) as s:
        store = await make_store(s)
        await make_assistant(s, store=store)
        member, _ = await upsert(
            s,
            name="李四",
            gender="M",
            birthday="1990-05-20",
            wedding_anniversary="10-01",
            store="S001",
            assistant="A001",
            preferred_contact="19:00-21:00",
            locale="en",
        )
        await consent.stop(s, member=member, channel="staff", at=AT, source="operator")
        view = await member_view(s, rules=RULES, tz=TZ, member=member, today=TODAY)
    assert view["phone"] == PHONE
    assert (view["birthday"], view["wedding_anniversary"]) == ("1990-05-20", "10-01")
    assert (view["store"], view["assistant"], view["gender"]) == ("S001", "A001", "M")
    assert (view["points"], view["tier"], view["tier_name"]) == (0, "points", "普卡")
    assert view["cumulative_spend"] == "0.00"
    assert view["join_date"] == "2026-03-10"
    assert view["last_purchase"] is None
    assert view["vouchers"] == [] and view["card_applications"] == []
    assert view["stopped"] is True
    assert view["consent"] == [
        {
            "action": "stop",
            "channel": "staff",
            "at": "2026-03-10T14:00:00+08:00",
            "source": "operator",
        }
    ]


async def test_get_member_by_phone_accepts_any_spelling(sessions):
    async with transaction(sessions) as s:
        await make_member(s, phone=PHONE)
        assert (await get_member_by_phone(s, phone="138-0013-8000")).phone == PHONE
        assert await get_member_by_phone(s, phone="13900139000") is None
        with pytest.raises(InvalidInput):
            await get_member_by_phone(s, phone="abc")


async def test_staff_apply_only_for_a_tier_the_member_reached(sessions):
    async with transaction(sessions) as s:
        member = await make_member(s)
        for tier, error in [("nope", InvalidInput), ("points", InvalidInput), ("gold", Conflict)]:
            with pytest.raises(error) as info:
                await apply_for_card(s, rules=RULES, member=member, tier=tier, actor="api", now=AT)
            assert info.value.field == "tier"
        member.eligible_tier = "gold"
        app, created = await apply_for_card(
            s, rules=RULES, member=member, tier="gold", actor="api", now=AT
        )
        assert created and app.status == "applied"
        again, created = await apply_for_card(
            s, rules=RULES, member=member, tier="gold", actor="api", now=AT
        )
        assert (again.id, created) == (app.id, False)


# --------------------------------------------------------------------------- consent


async def test_stop_and_resume_are_confirmed_once(sessions):
    async with transaction(sessions) as s:
        member = await make_member(s)
        assert await consent.stop(s, member=member, channel="sms", at=AT, source="TD")
        assert not await consent.stop(s, member=member, channel="wechat", at=AT, source="退订")
        assert member.stopped
        later = datetime(2026, 3, 11, tzinfo=UTC)
        assert await consent.resume(s, member=member, channel="sms", at=later, source="START")
        assert not await consent.resume(s, member=member, channel="sms", at=later, source="START")
        assert not member.stopped
        events = await consent.history(s, member_id=member.id)
        assert [(e.action, e.channel, e.source) for e in events] == [
            ("stop", "sms", "TD"),
            ("resume", "sms", "START"),
        ]
        with pytest.raises(ValueError):
            await consent.stop(s, member=member, channel="sms", at=datetime(2026, 3, 12), source="")


async def test_simultaneous_stops_record_one_event(sessions):
    async with transaction(sessions) as s:
        member_id = (await make_member(s)).id

    async def stop_once() -> bool:
        async with transaction(sessions) as s:
            member = await s.get(Member, member_id)
            return await consent.stop(s, member=member, channel="sms", at=AT, source="STOP")

    assert sorted(await asyncio.gather(*(stop_once() for _ in range(3)))) == [False, False, True]
    async with transaction(sessions) as s:
        assert len((await s.exec(select(ConsentEvent))).all()) == 1


# --------------------------------------------------------------------------- stores and tokens


async def test_stores_and_assistant_tokens(sessions):
    async with transaction(sessions) as s:
        store, created = await stores.upsert_store(s, code="S1", name="一店", city="上海")
        assert created
        store, created = await stores.upsert_store(s, code="S1", name="新一店", city="北京")
        assert not created and (store.name, store.city) == ("新一店", "北京")
        with pytest.raises(InvalidInput) as info:
            await stores.create_or_update_assistant(s, code="A1", name="王", store_code="NO")
        assert info.value.field == "store"
        assistant, created, token = await stores.create_or_update_assistant(
            s, code="A1", name="王", store_code="S1"
        )
        assert created and token and len(token) >= 40
        assert assistant.token_hash == stores.hash_token(token) != token
        _, created, none = await stores.create_or_update_assistant(
            s, code="A1", name="王丽", store_code="S1"
        )
        assert (created, none) == (False, None)
        assert (await stores.authenticate_assistant(s, token=token)).code == "A1"
        _, _, rotated = await stores.create_or_update_assistant(
            s, code="A1", name="王丽", store_code="S1", rotate_token=True
        )
        assert rotated and rotated != token
        assert await stores.authenticate_assistant(s, token=token) is None
        assert (await stores.authenticate_assistant(s, token=rotated)).name == "王丽"
        assert await stores.authenticate_assistant(s, token="") is None
        row = (await s.exec(select(Assistant))).one()
        row.active = False
        assert await stores.authenticate_assistant(s, token=rotated) is None
