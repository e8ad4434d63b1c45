"""The staff console end to end through the app factory: sign-in, cookie, CSRF, scope
of what an assistant sees, the member page's greeting preview and send, the card
tracker and the manager's page (docs/staff-console.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from bot.app import create_app
from models import cards
from models.clock import brand_today
from models.db import transaction
from models.stores import create_or_update_assistant
from models.tables.cards import CardApplication, CardEvent
from models.tables.members import Member
from models.tables.outbox import OutboxMessage
from models.tables.staff import StaffSession
from tests.conftest import API_KEY
from tests.factories import make_member, make_store

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TZ_NOW = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class Seeded:
    tokens: dict[str, str]
    members: dict[str, int]
    application_id: int


async def seed(sessions, settings) -> Seeded:
    """Store S001: assistants A001 and A002, manager M01; A001 owns 张三 and 李四 (with
    a card application), A002 owns 王五. Store S002 has assistant B001 and 赵六."""
    tz = settings.brand.tz
    today = brand_today(tz)
    tokens: dict[str, str] = {}
    async with transaction(sessions) as s:
        store = await make_store(s, code="S001", name="南京西路店")
        other = await make_store(s, code="S002", name="淮海路店")
        for code, name, store_code, role in (
            ("A001", "王丽", "S001", "assistant"),
            ("A002", "李娜", "S001", "assistant"),
            ("M01", "周店长", "S001", "manager"),
            ("B001", "陈红", "S002", "assistant"),
        ):
            assistant, _created, token = await create_or_update_assistant(
                s, code=code, name=name, store_code=store_code, role=role
            )
            tokens[code] = token
        ids = {code: (await _assistant_id(s, code)) for code in tokens}
        members = {}
        for phone, name, owner, st, birthday in (
            ("+8613800138000", "张三", "A001", store, today.strftime("%m-%d")),
            ("+8613900139001", "李四", "A001", store, None),
            ("+8613700137002", "王五", "A002", store, None),
            ("+8613600136003", "赵六", "B001", other, None),
        ):
            m = await make_member(s, phone=phone, name=name, store=st, birthday=birthday)
            m.assistant_id = ids[owner]
            s.add(m)
            members[name] = m.id
        await s.flush()
        lisi = await s.get(Member, members["李四"])
        app = await cards.open_application(
            s, member=lisi, tier="gold", actor="api", now=datetime.now(UTC)
        )
        return Seeded(tokens, members, app.id)


async def _assistant_id(s, code: str) -> int:
    from models.stores import get_assistant

    a = await get_assistant(s, code=code)
    assert a is not None
    return a.id


@pytest.fixture
async def world(sessions, settings):
    return await seed(sessions, settings)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def sign_in(client, secret: str, code: str = "") -> None:
    resp = await client.post(
        "/staff/signin", data={"secret": secret, "code": code}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()


async def csrf_of(client, path: str = "/staff/") -> str:
    resp = await client.get(path)
    assert resp.status == 200
    match = CSRF.search(await resp.text())
    assert match
    return match.group(1)


async def count(sessions, model, *where) -> int:
    async with transaction(sessions) as s:
        return (await s.exec(select(func.count()).select_from(model).where(*where))).one()


# --------------------------------------------------------------------------- sign-in


async def test_sign_in_with_the_token_sets_a_safe_session_cookie(client, world):
    resp = await client.get("/staff/signin")
    text = await resp.text()
    assert resp.status == 200
    assert '<meta charset="utf-8">' in text and 'name="viewport"' in text
    assert "导购登录" in text  # zh_CN by default

    resp = await client.post(
        "/staff/signin", data={"secret": world.tokens["A001"]}, allow_redirects=False
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/staff/"
    cookie = resp.headers["Set-Cookie"]
    assert "memberbot_staff=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/staff" in cookie
    assert "Secure" not in cookie  # public_url is http here

    resp = await client.get("/staff/")
    page = await resp.text()
    assert resp.status == 200
    assert "张三" in page and "李四" in page
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "charset=utf-8" in resp.headers["Content-Type"]
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


async def test_cookie_is_secure_when_the_public_url_is_https(
    aiohttp_client, make_settings, sessions
):
    settings = make_settings(server={"public_url": "https://bot.example.com"})
    world = await seed(sessions, settings)
    client = await aiohttp_client(create_app(settings))
    resp = await client.post(
        "/staff/signin", data={"secret": world.tokens["A001"]}, allow_redirects=False
    )
    assert resp.status == 303
    assert "Secure" in resp.headers["Set-Cookie"]


async def test_a_wrong_token_shows_the_sign_in_page_again_and_sets_nothing(client, world, sessions):
    resp = await client.post("/staff/signin", data={"secret": "not-a-token"})
    text = await resp.text()
    assert resp.status == 401
    assert "令牌或密码不正确" in text
    assert "Set-Cookie" not in resp.headers
    assert await count(sessions, StaffSession) == 0


async def test_failed_sign_ins_are_limited_per_address(aiohttp_client, make_settings, sessions):
    settings = make_settings(staff={"sign_in_attempts": 3, "sign_in_window": 600})
    world = await seed(sessions, settings)
    client = await aiohttp_client(create_app(settings))
    for _ in range(3):
        resp = await client.post("/staff/signin", data={"secret": "wrong"})
        assert resp.status == 401
    # Even the right token is refused while the address is locked out.
    resp = await client.post("/staff/signin", data={"secret": world.tokens["A001"]})
    assert resp.status == 429
    assert "登录失败次数过多" in await resp.text()


async def test_sign_in_with_code_and_password_set_by_the_operator_api(client, world):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    resp = await client.post(
        "/api/assistants",
        json={
            "code": "A002",
            "name": "李娜",
            "store": "S001",
            "password": "correct horse 9",
            "role": "manager",
        },
        headers=headers,
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body["role"] == "manager" and "token" not in body
    resp = await client.post("/staff/signin", data={"code": "A002", "secret": "wrong password"})
    assert resp.status == 401
    await sign_in(client, "correct horse 9", code="A002")
    resp = await client.get("/staff/manager")
    assert resp.status == 200  # the role given through the API


async def test_a_short_password_is_refused_by_the_api(client, world):
    resp = await client.post(
        "/api/assistants",
        json={"code": "A002", "name": "李娜", "store": "S001", "password": "short"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert resp.status == 422
    assert (await resp.json())["field"] == "password"


async def test_unauthenticated_requests_redirect_and_change_nothing(client, world, sessions):
    resp = await client.get("/staff/members/1", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/staff/signin?next=%2Fstaff%2Fmembers%2F1"
    resp = await client.post(
        f"/staff/members/{world.members['张三']}/greeting",
        data={"occasion": "birthday", "note": "", "action": "send", "csrf_token": "x"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/staff/signin"
    resp = await client.post(
        f"/staff/cards/{world.application_id}/advance",
        data={"status": "entered"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert await count(sessions, OutboxMessage) == 0
    assert await count(sessions, CardEvent, CardEvent.to_status == "entered") == 0


async def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(client, world):
    resp = await client.post(
        "/staff/signin",
        data={"secret": world.tokens["A001"], "next": "/staff/cards"},
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/staff/cards"
    resp = await client.post(
        "/staff/signin",
        data={"secret": world.tokens["A001"], "next": "https://evil.example/"},
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/staff/"


# --------------------------------------------------------------------------- CSRF


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_a_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
    client, world, sessions, token
):
    await sign_in(client, world.tokens["A001"])
    data = {"occasion": "birthday", "note": "", "action": "send"}
    card = {"status": "entered"}
    if token is not None:
        data["csrf_token"] = card["csrf_token"] = token
    resp = await client.post(f"/staff/members/{world.members['张三']}/greeting", data=data)
    assert resp.status == 403
    assert "表单令牌" in await resp.text()
    resp = await client.post(f"/staff/cards/{world.application_id}/advance", data=card)
    assert resp.status == 403
    resp = await client.post("/staff/signout", data={} if token is None else {"csrf_token": token})
    assert resp.status == 403
    assert await count(sessions, OutboxMessage) == 0
    assert await count(sessions, CardEvent, CardEvent.to_status == "entered") == 0
    assert await count(sessions, StaffSession) == 1  # still signed in
    assert (await client.get("/staff/")).status == 200


# --------------------------------------------------------------------------- scope


async def test_an_assistant_sees_only_their_members_and_cannot_open_others(client, world):
    await sign_in(client, world.tokens["A001"])
    page = await (await client.get("/staff/")).text()
    assert "张三" in page and "王五" not in page and "赵六" not in page
    for name in ("王五", "赵六"):
        resp = await client.get(f"/staff/members/{world.members[name]}")
        assert resp.status == 404
        resp = await client.post(
            f"/staff/members/{world.members[name]}/greeting",
            data={"occasion": "birthday", "action": "preview", "csrf_token": await csrf_of(client)},
        )
        assert resp.status == 404
    assert (await client.get("/staff/members/999999")).status == 404
    assert (await client.get("/staff/members/abc")).status == 404


async def test_a_manager_sees_the_store_but_not_other_stores(client, world):
    await sign_in(client, world.tokens["M01"])
    page = await (await client.get("/staff/")).text()
    assert "张三" in page and "王五" in page and "赵六" not in page
    assert (await client.get(f"/staff/members/{world.members['王五']}")).status == 200
    assert (await client.get(f"/staff/members/{world.members['赵六']}")).status == 404


async def test_the_manager_page_is_for_managers_only(client, world):
    await sign_in(client, world.tokens["A001"])
    resp = await client.get("/staff/manager")
    assert resp.status == 403
    assert "只有店长" in await resp.text()
    resp = await client.post(
        "/staff/manager/redistribute", data={"csrf_token": await csrf_of(client)}
    )
    assert resp.status == 403


# --------------------------------------------------------------------------- members


async def test_search_by_name_or_phone_with_masked_numbers(client, world):
    await sign_in(client, world.tokens["A001"])
    csrf = await csrf_of(client)

    async def search(q: str) -> str:
        # A POST: the phone number searched for stays out of URLs and access logs.
        resp = await client.post("/staff/", data={"q": q, "csrf_token": csrf})
        assert resp.status == 200
        return await resp.text()

    page = await search("李")
    assert "李四" in page and "张三" not in page
    page = await search("0138000")
    assert "张三" in page and "李四" not in page
    assert "+86138****8000" in page
    assert "13800138000" not in page  # full numbers only on the member page
    page = await search("%")
    assert "张三" not in page  # LIKE wildcards are plain characters
    resp = await client.post("/staff/", data={"q": "李"})
    assert resp.status == 403  # no CSRF token
    member = await (await client.get(f"/staff/members/{world.members['张三']}")).text()
    assert "+8613800138000" in member


async def test_the_member_page_shows_details_and_contact_history(client, world, sessions):
    async with transaction(sessions) as s:
        s.add(
            OutboxMessage(
                member_id=world.members["张三"], kind="care_d3", occasion="purchase:1",
                planned_on=TZ_NOW.date(), text="张三您好，衣服穿着还合适吗？", channel="sms",
                status="sent", send_after=TZ_NOW,
            )
        )  # fmt: skip
        await cards.advance(
            s, rules=world_rules(), application_id=world.application_id, to_status="entered",
            actor="assistant:A001", now=TZ_NOW,
        )  # fmt: skip
    await sign_in(client, world.tokens["A001"])
    page = await (await client.get(f"/staff/members/{world.members['张三']}")).text()
    assert "第3天回访" in page and "已发送" in page and "衣服穿着还合适吗" in page
    page = await (await client.get(f"/staff/members/{world.members['李四']}")).text()
    assert "已申请 → 已录入系统" in page and "assistant:A001" in page


def world_rules():
    from models.settings import Settings

    return Settings().loyalty


async def test_greeting_preview_then_refusal_then_send(client, world, sessions):
    await sign_in(client, world.tokens["A001"])
    member_id = world.members["张三"]
    csrf = await csrf_of(client, f"/staff/members/{member_id}")
    url = f"/staff/members/{member_id}/greeting"

    resp = await client.post(
        url, data={"occasion": "birthday", "note": "", "action": "preview", "csrf_token": csrf}
    )
    page = await resp.text()
    assert resp.status == 200
    assert 'id="draft-text"' in page and "王丽" in page and "退订" in page
    assert "已通过消息规则检查" in page

    resp = await client.post(
        url,
        data={
            "occasion": "birthday",
            "note": "本周全场打折",
            "action": "preview",
            "csrf_token": csrf,
        },
    )
    page = await resp.text()
    assert "不符合消息规则" in page and "promotion" in page  # the rule is named
    resp = await client.post(
        url,
        data={"occasion": "birthday", "note": "本周全场打折", "action": "send", "csrf_token": csrf},
    )
    assert resp.status == 422
    assert "未发送" in await resp.text()
    assert await count(sessions, OutboxMessage) == 0

    resp = await client.post(
        url,
        data={"occasion": "birthday", "note": "祝您身体健康", "action": "send", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == f"/staff/members/{member_id}?sent=new"
    page = await (await client.get(resp.headers["Location"])).text()
    assert "祝福已加入发送队列" in page
    async with transaction(sessions) as s:
        rows = list(await s.exec(select(OutboxMessage)))
    assert len(rows) == 1
    assert rows[0].member_id == member_id and rows[0].kind == "personal_greeting"
    assert "祝您身体健康" in rows[0].text


async def test_a_manager_may_not_greet_another_assistants_member(client, world, sessions):
    await sign_in(client, world.tokens["M01"])
    member_id = world.members["张三"]
    csrf = await csrf_of(client, f"/staff/members/{member_id}")
    resp = await client.post(
        f"/staff/members/{member_id}/greeting",
        data={"occasion": "birthday", "note": "", "action": "send", "csrf_token": csrf},
    )
    assert resp.status == 403
    assert await count(sessions, OutboxMessage) == 0


async def test_today_shows_birthdays_and_dormant_members(client, world, sessions, settings):
    tz = settings.brand.tz
    async with transaction(sessions) as s:
        lisi = await s.get(Member, world.members["李四"])
        lisi.last_purchase_at = datetime.now(UTC) - timedelta(days=400)
        s.add(lisi)
    await sign_in(client, world.tokens["A001"])
    page = await (await client.get("/staff/today")).text()
    today = brand_today(tz)
    birthdays_today = page.split('id="birthdays-today"')[1].split("</ul>")[0]
    assert "张三" in birthdays_today and today.isoformat() in birthdays_today
    dormant = page.split('id="dormant"')[1].split("</ul>")[0]
    assert "李四" in dormant and "张三" not in dormant


# --------------------------------------------------------------------------- cards


async def test_a_card_step_records_who_and_an_illegal_one_is_explained(client, world, sessions):
    await sign_in(client, world.tokens["A001"])
    page = await (await client.get("/staff/cards")).text()
    assert f'id="application-{world.application_id}"' in page
    csrf = CSRF.search(page).group(1)
    url = f"/staff/cards/{world.application_id}/advance"
    resp = await client.post(url, data={"status": "entered", "csrf_token": csrf},
                             allow_redirects=False)  # fmt: skip
    assert resp.status == 303
    page = await (await client.get(resp.headers["Location"])).text()
    assert "已更新" in page and "assistant:A001" in page
    async with transaction(sessions) as s:
        app = await s.get(CardApplication, world.application_id)
        assert app.status == "entered"
        event = (await s.exec(select(CardEvent).where(CardEvent.to_status == "entered"))).one()
        assert event.actor == "assistant:A001"
        assert event.at is not None

    resp = await client.post(url, data={"status": "picked_up", "csrf_token": csrf})
    assert resp.status == 409
    assert "无法从「已录入系统」改为「已领取」" in await resp.text()
    resp = await client.post(url, data={"status": "flying", "csrf_token": csrf})
    assert resp.status == 422


async def test_another_assistant_cannot_step_the_card(client, world, sessions):
    await sign_in(client, world.tokens["A002"])
    csrf = await csrf_of(client)
    resp = await client.post(
        f"/staff/cards/{world.application_id}/advance",
        data={"status": "entered", "csrf_token": csrf},
    )
    assert resp.status == 404
    assert await count(sessions, CardEvent, CardEvent.to_status == "entered") == 0


# --------------------------------------------------------------------------- session


async def test_sign_out_ends_the_session_on_the_server(client, world, sessions):
    await sign_in(client, world.tokens["A001"])
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/staff/"))[
        "memberbot_staff"
    ].value
    csrf = await csrf_of(client)
    resp = await client.post("/staff/signout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/staff/signin?out=1"
    assert await count(sessions, StaffSession) == 0
    # Replaying the old cookie gets nothing.
    client.session.cookie_jar.update_cookies({"memberbot_staff": cookie})
    resp = await client.get("/staff/", allow_redirects=False)
    assert resp.status == 303


async def test_an_expired_session_is_refused(client, world, sessions):
    await sign_in(client, world.tokens["A001"])
    async with transaction(sessions) as s:
        row = (await s.exec(select(StaffSession))).one()
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        s.add(row)
    resp = await client.get("/staff/", allow_redirects=False)
    assert resp.status == 303


async def test_the_console_speaks_english_on_request(client, world):
    await sign_in(client, world.tokens["A001"])
    csrf = await csrf_of(client)
    resp = await client.post(
        "/staff/locale", data={"locale": "en", "next": "/staff/", "csrf_token": csrf}
    )
    page = await resp.text()
    assert resp.status == 200
    assert "My members" in page and 'lang="en"' in page
    page = await (await client.get("/staff/signin", params={"lang": "en"})).text()
    assert "Staff sign-in" in page


# --------------------------------------------------------------------------- manager


async def test_the_manager_page_shows_the_numbers(client, world, sessions):
    await sign_in(client, world.tokens["M01"])
    resp = await client.get("/staff/manager")
    page = await resp.text()
    assert resp.status == 200
    assert 'id="capture"' in page and 'id="rates"' in page and 'id="pickup"' in page
    assert "已申请" in page  # the open application in the pickup progress
    assert "100.0%" in page  # nobody stopped: opt-in 3 / 3
    csrf = CSRF.search(page).group(1)
    resp = await client.post(
        "/staff/manager/redistribute", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/staff/manager?redistributed=0"
    resp = await client.get("/staff/manager", params={"start": "nope"})
    assert resp.status == 422


def test_both_locales_have_every_text():
    from bot.staff.render import strings

    assert set(strings("zh_CN")) == set(strings("en"))


async def test_the_console_assets_are_served_from_its_own_origin(client):
    resp = await client.get("/staff/console.css")
    assert resp.status == 200 and resp.content_type == "text/css"
    resp = await client.get("/staff/console.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"
    page = await (await client.get("/staff/signin")).text()
    assert "http" not in page.split("<body>")[0]  # no external assets or CDNs


async def test_the_demo_has_a_store_manager(client, sessions, settings):
    from bot.demo import demo_token, seed_demo

    async with transaction(sessions) as s:
        await seed_demo(s, settings=settings, today=brand_today(settings.brand.tz))
    await sign_in(client, demo_token("A002"))
    assert (await client.get("/staff/manager")).status == 200
    page = await (await client.get("/staff/")).text()
    assert "陈静" in page and "张伟" in page  # the whole store
    await sign_in(client, demo_token("A001"))
    assert (await client.get("/staff/manager")).status == 403


async def test_notifying_the_member_records_the_agreed_pickup_day(client, world, sessions):
    async with transaction(sessions) as s:
        for step in ("entered", "sent_to_head_office", "approved"):
            await cards.advance(
                s, rules=world_rules(), application_id=world.application_id, to_status=step,
                actor="api", now=TZ_NOW,
            )  # fmt: skip
    await sign_in(client, world.tokens["A001"])
    page = await (await client.get("/staff/cards")).text()
    assert 'name="pickup_date"' in page
    csrf = CSRF.search(page).group(1)
    url = f"/staff/cards/{world.application_id}/advance"
    resp = await client.post(
        url, data={"status": "notified", "pickup_date": "June 3", "csrf_token": csrf}
    )
    assert resp.status == 422
    resp = await client.post(
        url,
        data={"status": "notified", "pickup_date": "2026-06-03", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert resp.status == 303
    async with transaction(sessions) as s:
        app = await s.get(CardApplication, world.application_id)
    assert app.status == "notified"
    assert app.pickup_date.isoformat() == "2026-06-03"
