"""`POST /api/greetings` end to end through the app factory, and `scheduler.greetings`
directly (what the staff console calls). CONTRACT.md HTTP table, MESSAGING.md."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

import bot.api.greetings
from bot.app import create_app
from models import ownership, stores
from models.db import transaction
from models.kinds import GREETING_OCCASIONS, LOCALES
from models.outbox.states import enqueue
from models.tables.members import Assistant, Identity, Member
from models.tables.outbox import OutboxEvent, OutboxMessage
from scheduler import greeting_checks, greetings, message_rules, render
from tests.conftest import API_KEY

SH = ZoneInfo("Asia/Shanghai")
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE = "+8613800138000"
OTHER_PHONE = "+8613800138001"
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=SH)  # inside the default 09:00-21:00 window


class Clock:
    """The API's clock (`bot.api.greetings.utcnow`), set by each test."""

    def __init__(self, at: datetime):
        self.at = at.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(NOON)
    monkeypatch.setattr(bot.api.greetings, "utcnow", c)
    return c


async def call(client, body, token: str | None = None, headers=None):
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    resp = await client.post("/api/greetings", json=body, headers=headers)
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, data, resp


async def operator(client, path: str, body: dict | None = None) -> dict:
    resp = await client.post(path, json=body if body is not None else {}, headers=AUTH)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def _client(aiohttp_client, make_settings, **overrides):
    return await aiohttp_client(create_app(make_settings(**overrides)))


async def seed(client) -> dict[str, str]:
    """Store S001 (静安店) with assistants A001 王丽 and A002 李娜; member PHONE (张三)
    owned by A001, OTHER_PHONE (李四) by A002. Returns the tokens by code."""
    await operator(client, "/api/stores", {"code": "S001", "name": "静安店", "city": "上海"})
    tokens = {}
    for code, name in (("A001", "王丽"), ("A002", "李娜")):
        body = await operator(
            client, "/api/assistants", {"code": code, "name": name, "store": "S001"}
        )
        tokens[code] = body["token"]
    await operator(
        client,
        "/api/members",
        {"phone": PHONE, "name": "张三", "store": "S001", "assistant": "A001",
         "birthday": "12-01"},  # the test clock's day (birthday greetings go near it)
    )
    await operator(
        client,
        "/api/members",
        {"phone": OTHER_PHONE, "name": "李四", "store": "S001", "assistant": "A002",
         "birthday": "12-02"},
    )
    return tokens


async def rows(sessions, **where) -> list[OutboxMessage]:
    async with transaction(sessions) as s:
        stmt = select(OutboxMessage).where(
            *(getattr(OutboxMessage, k) == v for k, v in where.items())
        )
        return list((await s.exec(stmt.order_by(OutboxMessage.id))).all())


async def member_id(sessions, phone: str) -> int:
    async with transaction(sessions) as s:
        return (await s.exec(select(Member.id).where(Member.phone == phone))).one()


# --------------------------------------------------------------------------- 202 queued


async def test_queued_by_sms_signed_with_store_and_assistant(
    aiohttp_client, make_settings, sessions, clock
):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    status, body, _ = await call(
        client,
        {
            "member": "13800138000",
            "occasion": "birthday",
            "note": "上次您说想去海边走走，祝旅途愉快！",
        },
        tokens["A001"],
    )
    assert status == 202, body
    assert body["status"] == "queued" and body["channel"] == "sms"
    assert body["send_after"] == NOON.isoformat()
    assert "reason" not in body
    lines = body["text"].splitlines()
    assert lines[0].startswith("张三，生日快乐")
    assert lines[1] == "上次您说想去海边走走，祝旅途愉快！"
    assert lines[-2] == "——静安店 王丽"
    assert lines[-1] == "回复TD退订"
    (row,) = await rows(sessions, kind="personal_greeting")
    assert row.id == body["id"] and row.text == body["text"]
    assert (row.status, row.channel, row.via, row.address) == ("queued", "sms", "console", PHONE)
    assert row.assistant_id is not None and row.store_id is not None
    assert row.planned_on == NOON.date()
    assert row.occasion.startswith("birthday:2026-12-01:")
    async with transaction(sessions) as s:
        (event,) = (await s.exec(select(OutboxEvent).where(OutboxEvent.message_id == row.id))).all()
    assert (event.from_status, event.to_status) == ("planned", "queued")


async def test_english_member_gets_english_text(aiohttp_client, make_settings, sessions, clock):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    async with transaction(sessions) as s:
        member = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
        member.locale = "en"
        s.add(member)
    status, body, _ = await call(
        client, {"member": PHONE, "occasion": "other", "note": "Hope the trip was lovely!"},
        tokens["A001"],
    )  # fmt: skip
    assert status == 202, body
    assert body["text"].splitlines() == [
        "Hi 张三, Hope the trip was lovely!",
        "— 静安店, 王丽",
        "Reply STOP to opt out",
    ]


async def test_wechat_customer_service_while_the_window_is_open(
    aiohttp_client, make_settings, sessions, clock
):
    client = await _client(aiohttp_client, make_settings, wechat={"enabled": True})
    tokens = await seed(client)
    mid = await member_id(sessions, PHONE)
    async with transaction(sessions) as s:
        s.add(
            Identity(
                member_id=mid, channel="wechat", address="o-zhang",
                last_inbound_at=clock.at - timedelta(hours=3),
            )
        )  # fmt: skip
    status, body, _ = await call(client, {"member": PHONE, "occasion": "birthday"}, tokens["A001"])
    assert status == 202, body
    assert (body["status"], body["channel"]) == ("queued", "wechat")
    (row,) = await rows(sessions, kind="personal_greeting")
    assert (row.via, row.address) == ("customer_service", "o-zhang")
    # Two days later the 48-hour window has closed: the next greeting goes by SMS.
    clock.at += timedelta(days=2)
    status, body, _ = await call(client, {"member": PHONE, "occasion": "other"}, tokens["A001"])
    assert (status, body["channel"]) == (202, "sms")


async def test_quiet_hours_shift_send_after_to_the_next_morning(
    aiohttp_client, make_settings, sessions, clock
):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    clock.at = datetime(2026, 12, 1, 22, 30, tzinfo=SH).astimezone(UTC)
    status, body, _ = await call(client, {"member": PHONE, "occasion": "birthday"}, tokens["A001"])
    assert status == 202, body
    assert body["send_after"] == "2026-12-02T09:00:00+08:00"
    (row,) = await rows(sessions, kind="personal_greeting")
    assert row.planned_on.isoformat() == "2026-12-02"  # the sender will not call it too late
    # The member's own preferred time narrows the window further.
    async with transaction(sessions) as s:
        member = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
        member.preferred_contact = "19:00-21:00"
        s.add(member)
    clock.at = datetime(2026, 12, 3, 10, 0, tzinfo=SH).astimezone(UTC)
    status, body, _ = await call(client, {"member": PHONE, "occasion": "other"}, tokens["A001"])
    assert body["send_after"] == "2026-12-03T19:00:00+08:00"


# --------------------------------------------------------------------------- 202 suppressed


async def test_stopped_member_is_recorded_suppressed(
    aiohttp_client, make_settings, sessions, clock
):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    await operator(client, f"/api/members/{PHONE}/stop")
    status, body, _ = await call(client, {"member": PHONE, "occasion": "birthday"}, tokens["A001"])
    assert status == 202, body
    assert (body["status"], body["reason"], body["channel"]) == ("suppressed", "stopped", "")
    assert body["send_after"] is None
    (row,) = await rows(sessions, kind="personal_greeting")
    assert (row.status, row.reason) == ("suppressed", "stopped")


async def test_weekly_cap_suppresses_the_greeting(aiohttp_client, make_settings, sessions, clock):
    client = await _client(aiohttp_client, make_settings, messaging={"weekly_cap": 2})
    tokens = await seed(client)
    mid = await member_id(sessions, PHONE)
    async with transaction(sessions) as s:
        for i, days_ago in enumerate((2, 5)):
            at = clock.at - timedelta(days=days_ago)
            await enqueue(
                s, member_id=mid, kind="care_d30", occasion=f"purchase:{i}",
                planned_on=at.astimezone(SH).date(), text="…", channel="sms", via="console",
                address=PHONE, send_after=at, now=at,
            )  # fmt: skip
    status, body, _ = await call(client, {"member": PHONE, "occasion": "other"}, tokens["A001"])
    assert status == 202, body
    assert (body["status"], body["reason"]) == ("suppressed", "capped")
    # Another member with nothing this week is not capped.
    await operator(client, "/api/members", {"phone": "+8613800138002", "assistant": "A001"})
    status, body, _ = await call(
        client, {"member": "+8613800138002", "occasion": "other"}, tokens["A001"]
    )
    assert (status, body["status"]) == (202, "queued")


async def test_a_message_older_than_seven_days_does_not_count(
    aiohttp_client, make_settings, sessions, clock
):
    client = await _client(aiohttp_client, make_settings, messaging={"weekly_cap": 1})
    tokens = await seed(client)
    mid = await member_id(sessions, PHONE)
    at = clock.at - timedelta(days=8)
    async with transaction(sessions) as s:
        await enqueue(
            s, member_id=mid, kind="care_d30", occasion="purchase:1",
            planned_on=at.astimezone(SH).date(), text="…", channel="sms", via="console",
            address=PHONE, send_after=at, now=at,
        )  # fmt: skip
    status, body, _ = await call(client, {"member": PHONE, "occasion": "other"}, tokens["A001"])
    assert (status, body["status"]) == (202, "queued")


# --------------------------------------------------------------------------- 401 / 403 / 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {API_KEY}"},  # the operator key is not an assistant token
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_missing_or_unknown_token_is_401(aiohttp_client, make_settings, sessions, headers):
    client = await _client(aiohttp_client, make_settings)
    await seed(client)
    status, body, resp = await call(
        client, {"member": PHONE, "occasion": "birthday"}, headers=headers
    )
    assert status == 401
    assert body["field"] == "authorization" and body["error"]
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert await rows(sessions) == []


async def test_inactive_assistant_is_401(aiohttp_client, make_settings, sessions, clock):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    async with transaction(sessions) as s:
        a = (await s.exec(select(Assistant).where(Assistant.code == "A001"))).one()
        a.active = False
        s.add(a)
    status, _, _ = await call(client, {"member": PHONE, "occasion": "birthday"}, tokens["A001"])
    assert status == 401


async def test_401_before_the_body_is_read(aiohttp_client, make_settings):
    client = await _client(aiohttp_client, make_settings)
    resp = await client.post("/api/greetings", data=b"{not json", headers={})
    assert resp.status == 401


async def test_other_assistants_member_is_403(aiohttp_client, make_settings, sessions, clock):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    status, body, _ = await call(
        client, {"member": OTHER_PHONE, "occasion": "birthday"}, tokens["A001"]
    )
    assert (status, body["field"]) == (403, "member")
    # After reassignment the new owner may greet, the old one may not.
    await operator(client, "/api/members", {"phone": OTHER_PHONE, "assistant": "A001"})
    status, _, _ = await call(client, {"member": OTHER_PHONE, "occasion": "other"}, tokens["A002"])
    assert status == 403
    status, _, _ = await call(client, {"member": OTHER_PHONE, "occasion": "other"}, tokens["A001"])
    assert status == 202
    assert len(await rows(sessions)) == 1


async def test_member_without_assignment_history_is_owned_by_members_assistant(
    aiohttp_client, make_settings, sessions, clock
):
    """`members.assistant_id` alone (a member recorded without history) means ownership."""
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    async with transaction(sessions) as s:
        a2 = (await s.exec(select(Assistant).where(Assistant.code == "A002"))).one()
        s.add(
            Member(phone="+8613800138009", name="王五", join_date=NOON.date(), assistant_id=a2.id)
        )
    status, _, _ = await call(
        client, {"member": "+8613800138009", "occasion": "other"}, tokens["A002"]
    )
    assert status == 202
    status, _, _ = await call(
        client, {"member": "+8613800138009", "occasion": "other"}, tokens["A001"]
    )
    assert status == 403


async def test_unknown_member_is_404_and_bad_phone_422(aiohttp_client, make_settings, clock):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    status, body, _ = await call(
        client, {"member": "13900000000", "occasion": "birthday"}, tokens["A001"]
    )
    assert (status, body["field"]) == (404, "member")
    status, body, _ = await call(
        client, {"member": "12345", "occasion": "birthday"}, tokens["A001"]
    )
    assert (status, body["field"]) == (422, "member")


# --------------------------------------------------------------------------- 422


@pytest.mark.parametrize(
    "locale, occasion, note, rule",
    [
        ("zh_CN", "birthday", "生日当天全场8折，欢迎来店！", "promotion_in_greeting"),
        ("zh_CN", "holiday", "节日期间有满300减50活动", "promotion_in_greeting"),
        ("en", "birthday", "Enjoy 20% off your next visit!", "promotion_in_greeting"),
        ("en", "other", "Our new collection is in store now.", "promotion_in_greeting"),
        ("zh_CN", "dormant", "最近怎么没来？是不是对我们不满意？", "prying_in_dormant"),
        (
            "en",
            "dormant",
            "Is everything okay? We noticed you stopped coming.",
            "prying_in_dormant",
        ),
        ("zh_CN", "seasonal", "天冷了，记得穿上羽绒服。", "product_in_seasonal"),
    ],
)
async def test_a_note_breaking_a_rule_is_422_and_nothing_is_saved(
    aiohttp_client, make_settings, sessions, clock, locale, occasion, note, rule
):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    async with transaction(sessions) as s:
        member = (await s.exec(select(Member).where(Member.phone == PHONE))).one()
        member.locale = locale
        s.add(member)
    status, body, _ = await call(
        client, {"member": PHONE, "occasion": occasion, "note": note}, tokens["A001"]
    )
    assert status == 422, body
    assert (body["rule"], body["field"]) == (rule, "note")
    assert body["error"]
    assert await rows(sessions) == []


async def test_the_same_words_pass_where_the_rule_does_not_apply(
    aiohttp_client, make_settings, sessions, clock
):
    """Prying is a dormant rule, product names a seasonal one: checked by occasion."""
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    status, body, _ = await call(
        client, {"member": PHONE, "occasion": "birthday", "note": "天冷了，记得穿上羽绒服。"},
        tokens["A001"],
    )  # fmt: skip
    assert status == 202, body


@pytest.mark.parametrize(
    "body, field, rule",
    [
        ({"member": PHONE, "occasion": "christmas"}, "occasion", "unknown_occasion"),
        ({"member": PHONE, "occasion": "other", "note": "好" * 201}, "note", "note_too_long"),
        ({"member": PHONE, "occasion": "other", "note": "hi\u202e"}, "note", "note_invalid"),
    ],
)
async def test_unknown_occasion_or_bad_note_is_422(
    aiohttp_client, make_settings, sessions, clock, body, field, rule
):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    status, answer, _ = await call(client, body, tokens["A001"])
    assert status == 422, answer
    assert (answer["field"], answer["rule"]) == (field, rule)


async def test_bad_bodies(aiohttp_client, make_settings, clock):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    auth = {"Authorization": f"Bearer {tokens['A001']}"}
    resp = await client.post("/api/greetings", data=b"{oops", headers=auth)
    assert resp.status == 400 and "error" in await resp.json()
    status, body, _ = await call(client, {"member": PHONE}, tokens["A001"])
    assert (status, body["field"]) == (422, "occasion")
    status, body, _ = await call(
        client, {"member": PHONE, "occasion": "other", "extra": 1}, tokens["A001"]
    )
    assert (status, body["field"]) == (422, "extra")


async def test_rules_are_checked_before_the_duplicate(
    aiohttp_client, make_settings, sessions, clock
):
    """A greeting queued under yesterday's word lists is refused today when the same
    request breaks today's rules: the rule check comes first, not the duplicate's 200."""
    note = "祝您周末愉快，记得来店里坐坐"
    first = await _client(aiohttp_client, make_settings)
    tokens = await seed(first)
    status, _, _ = await call(first, {"member": PHONE, "occasion": "other", "note": note},
                              tokens["A001"])  # fmt: skip
    assert status == 202
    stricter = make_settings().messaging.lexicon.promotion
    second = await _client(
        aiohttp_client, make_settings,
        messaging={"lexicon": {"promotion": {"zh": [*stricter.zh, "来店里"], "en": stricter.en}}},
    )  # fmt: skip
    status, body, _ = await call(
        second, {"member": PHONE, "occasion": "other", "note": note}, tokens["A001"]
    )
    assert (status, body["rule"], body["field"]) == (422, "promotion_in_greeting", "note")
    assert len(await rows(sessions)) == 1


# --------------------------------------------------------------------------- duplicates


async def test_identical_retry_is_200_with_the_same_message(
    aiohttp_client, make_settings, sessions, clock
):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    body = {"member": PHONE, "occasion": "birthday", "note": "生日快乐呀"}
    status, first, _ = await call(client, body, tokens["A001"])
    assert status == 202
    clock.at += timedelta(hours=2)  # the same brand day
    status, again, _ = await call(client, {**body, "member": "138 0013 8000"}, tokens["A001"])
    assert status == 200
    assert again == first
    # A different note, or occasion, is another greeting.
    status, other, _ = await call(client, {**body, "note": "天天开心"}, tokens["A001"])
    assert status == 202 and other["id"] != first["id"]
    status, _, _ = await call(client, {**body, "occasion": "other"}, tokens["A001"])
    assert status == 202
    # The next day, the same words are a new greeting.
    clock.at += timedelta(days=1)
    status, _, _ = await call(client, body, tokens["A001"])
    assert status == 202
    assert len(await rows(sessions)) == 4


async def test_concurrent_identical_requests_make_one_row(
    aiohttp_client, make_settings, sessions, clock
):
    client = await _client(aiohttp_client, make_settings)
    tokens = await seed(client)
    body = {"member": PHONE, "occasion": "birthday", "note": "天天开心"}
    answers = await asyncio.gather(*(call(client, body, tokens["A001"]) for _ in range(6)))
    statuses = sorted(a[0] for a in answers)
    assert statuses == [200, 200, 200, 200, 200, 202]
    assert len({a[1]["id"] for a in answers}) == 1
    assert len(await rows(sessions)) == 1


# --------------------------------------------------------------------------- 429


async def test_rate_limit_per_assistant_per_hour(aiohttp_client, make_settings, sessions, clock):
    client = await _client(
        aiohttp_client, make_settings,
        greetings={"per_assistant_per_hour": 3}, messaging={"weekly_cap": 100},
    )  # fmt: skip
    tokens = await seed(client)
    for i in range(3):
        status, body, _ = await call(
            client, {"member": PHONE, "occasion": "other", "note": f"第{i}条"}, tokens["A001"]
        )
        assert status == 202, body
        clock.at += timedelta(minutes=10)
    status, body, resp = await call(
        client, {"member": PHONE, "occasion": "other", "note": "第4条"}, tokens["A001"]
    )
    assert status == 429
    assert body["reason"] == "rate_limited" and "3" in body["error"]
    # The oldest of the three was 30 minutes ago: it leaves the hour in 30 minutes.
    assert 1790 <= int(resp.headers["Retry-After"]) <= 1801
    # An identical retry of a queued greeting is still answered (it adds nothing).
    status, _, _ = await call(
        client, {"member": PHONE, "occasion": "other", "note": "第0条"}, tokens["A001"]
    )
    assert status == 200
    # Another assistant has its own count.
    status, _, _ = await call(client, {"member": OTHER_PHONE, "occasion": "other"}, tokens["A002"])
    assert status == 202
    # An hour after the first one, there is room again.
    clock.at += timedelta(minutes=31)
    status, _, _ = await call(
        client, {"member": PHONE, "occasion": "other", "note": "第4条"}, tokens["A001"]
    )
    assert status == 202
    async with transaction(sessions) as s:
        a1 = (await s.exec(select(Assistant.id).where(Assistant.code == "A001"))).one()
    assert len(await rows(sessions, assistant_id=a1)) == 4


# --------------------------------------------------------------------------- the module


async def test_draft_writes_nothing_and_reports_the_violation(sessions, settings, clock):
    from tests.factories import make_assistant, make_member, make_store

    async with transaction(sessions) as s:
        store = await make_store(s, name="静安店")
        a = await make_assistant(s, store=store, name="王丽")
        m = await make_member(s, store=store, assistant=a, name="张三")
        ids = {"assistant_id": a.id, "member_id": m.id}
    async with transaction(sessions) as s:
        ok = await greetings.draft_greeting(
            s, settings=settings, occasion="dormant", note="", now=clock.at, **ids
        )
        bad = await greetings.draft_greeting(
            s, settings=settings, occasion="dormant", note="发生了什么事吗？", now=clock.at, **ids
        )
    assert ok.violation is None and ok.suppressed_reason is None
    assert (ok.channel, ok.send_after) == ("sms", clock.at)
    assert ok.text.endswith("——静安店 王丽\n回复TD退订")
    assert bad.violation is not None and bad.violation.rule == "prying_in_dormant"
    assert "发生了什么事吗？" in bad.text
    assert await rows(sessions) == []


async def test_owns_and_authenticate(sessions):
    from models.stores import create_or_update_assistant, upsert_store
    from tests.factories import make_member

    async with transaction(sessions) as s:
        await upsert_store(s, code="S1", name="一店", city="上海")
        a1, _, token1 = await create_or_update_assistant(s, code="A1", name="甲", store_code="S1")
        a2, _, _ = await create_or_update_assistant(s, code="A2", name="乙", store_code="S1")
        m = await make_member(s, assistant=a1)
        ids = (a1.id, a2.id, m.id)
    async with transaction(sessions) as s:
        found = await stores.authenticate_assistant(s, token=token1)
        assert found is not None and found.id == ids[0]
        assert await stores.authenticate_assistant(s, token=token1 + "x") is None
        assert await stores.authenticate_assistant(s, token="") is None
        assert await ownership.owns(s, assistant_id=ids[0], member_id=ids[2])
        assert not await ownership.owns(s, assistant_id=ids[1], member_id=ids[2])
        assert not await ownership.owns(s, assistant_id=ids[0], member_id=ids[2] + 99)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("occasion", GREETING_OCCASIONS)
def test_every_occasion_wording_passes_its_own_rules(settings, locale, occasion):
    """The wording of each occasion passes the rules of that occasion's kind (the lint
    checks it as personal_greeting), with and without a note, with and without a name."""
    for name in ("王女士", ""):
        for note in ("", "愿您一切都好" if locale == "zh_CN" else "All the best to you!"):
            values = {"member_name": name, "store_name": "静安店", "assistant_name": "小李"}
            text = render.render_message(
                "personal_greeting", locale, occasion=occasion, note=note, **values
            )
            found = message_rules.check(
                greeting_checks.rules_kind(occasion), text, locale=locale,
                lexicon=settings.messaging.lexicon, store_name="静安店", assistant_name="小李",
            )  # fmt: skip
            assert found == [], (text, found)
            assert len(text.splitlines()) >= 3
            if note:
                assert note in text
