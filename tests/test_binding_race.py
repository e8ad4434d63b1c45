"""One active WeChat identity per member, also when two openids bind at once (issue 10,
point 27): the database refuses a second one and the later binder is told so."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select

from bot.bot import MemberBot
from bot.conversation import Inbound
from models.db import transaction
from models.tables.conversation import BindCode
from models.tables.members import Identity, Member
from tests.conftest import is_pg
from tests.factories import make_member, make_store
from tests.test_conversation import NOW, Clock, FakeSms


@pytest.fixture
def sms():
    return FakeSms()


@pytest.fixture
def bot(settings, sessions, sms):
    return MemberBot(settings=settings, sessions=sessions, sms_sender=sms, clock=Clock(NOW))


async def _members(sessions, n: int) -> list[Member]:
    async with transaction(sessions) as s:
        store = await make_store(s)
        return [await make_member(s, phone=f"+86138001{i:05d}", store=store) for i in range(n)]


def _wechat(text: str, openid: str) -> Inbound:
    return Inbound(channel="wechat", sender=openid, text=text)


async def _active(sessions, member_id: int) -> list[str]:
    async with sessions() as s:
        stmt = select(Identity.address).where(
            Identity.member_id == member_id, Identity.channel == "wechat", Identity.active
        )
        return sorted((await s.exec(stmt)).all())


async def test_the_database_refuses_a_second_active_wechat_identity(sessions):
    (member,) = await _members(sessions, 1)
    async with transaction(sessions) as s:
        s.add(Identity(member_id=member.id, channel="wechat", address="o-a"))
        s.add(Identity(member_id=member.id, channel="wechat", address="o-old", active=False))
        s.add(Identity(member_id=member.id, channel="sms", address=member.phone))
        s.add(Identity(member_id=None, channel="wechat", address="o-unbound-1"))
        s.add(Identity(member_id=None, channel="wechat", address="o-unbound-2"))
    with pytest.raises(IntegrityError):
        async with transaction(sessions) as s:
            s.add(Identity(member_id=member.id, channel="wechat", address="o-b"))


async def test_two_openids_binding_one_member_at_once_leave_one_active(bot, sessions, sms):
    members = await _members(sessions, 10)
    attempts = []
    for m in members:
        for openid in (f"a-{m.id}", f"b-{m.id}"):
            await bot.handle(_wechat(f"绑定 {m.phone}", openid))
            attempts.append(_wechat(sms.code_for(m.phone), openid))
    replies = await asyncio.gather(*(bot.handle(i) for i in attempts))
    for m in members:
        assert len(await _active(sessions, m.id)) == 1, m.phone
    for r in replies:
        assert r.effects == ("bound",) or "再发一次同一个验证码" in r.text, r.text


@pytest.mark.skipif(not is_pg(), reason="SQLite runs one writing transaction at a time")
async def test_the_later_of_two_simultaneous_bindings_is_told_and_may_retry(
    bot, sessions, sms, engine
):
    (member,) = await _members(sessions, 1)
    await bot.handle(_wechat(f"绑定 {member.phone}", "o-late"))
    code = sms.code_for(member.phone)
    # A binding of another openid, not yet committed, that the late one cannot see.
    async with engine.connect() as conn:
        await conn.execute(
            Identity.__table__.insert().values(
                member_id=member.id, channel="wechat", address="o-first", active=True,
                bad=False, created_at=NOW,
            )
        )  # fmt: skip
        late = asyncio.create_task(bot.handle(_wechat(code, "o-late")))
        await asyncio.sleep(0.5)  # the late binding now waits on the index
        assert not late.done()
        await conn.commit()
    reply = await late
    assert reply.effects == () and "再发一次同一个验证码" in reply.text
    assert await _active(sessions, member.id) == ["o-first"]
    # The code is still good: sent again, it moves the membership, as a later binding does.
    again = await bot.handle(_wechat(code, "o-late"))
    assert again.effects == ("bound",)
    assert await _active(sessions, member.id) == ["o-late"]
    async with sessions() as s:
        assert (await s.exec(select(func.count()).select_from(BindCode))).one() == 1


@pytest.mark.skipif(not is_pg(), reason="SQLite runs one writing transaction at a time")
async def test_an_operator_setting_the_openid_during_a_binding_gets_409(
    aiohttp_client, settings, sessions, engine
):
    from bot.app import create_app
    from tests.conftest import API_KEY

    (member,) = await _members(sessions, 1)
    client = await aiohttp_client(create_app(settings))
    async with engine.connect() as conn:
        await conn.execute(
            Identity.__table__.insert().values(
                member_id=member.id, channel="wechat", address="o-first", active=True,
                bad=False, created_at=NOW,
            )
        )  # fmt: skip
        put = asyncio.create_task(
            client.post(
                "/api/members",
                json={"phone": member.phone, "wechat_openid": "o-api"},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        )
        await asyncio.sleep(0.5)
        assert not put.done()
        await conn.commit()
    resp = await put
    assert resp.status == 409
    assert (await resp.json())["field"] == "wechat_openid"
    assert await _active(sessions, member.id) == ["o-first"]
