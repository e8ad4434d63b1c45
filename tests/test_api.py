"""The operator API end to end, through the app factory (CONTRACT.md HTTP table)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp import web

from bot.app import create_app
from tests.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE = "+8613800138000"
AT = "2026-03-10T14:00:00+08:00"

MANUAL_GOLD = {
    "levels": [
        {"code": "points", "name": "普卡"},
        {
            "code": "gold",
            "name": "金卡",
            "reach": [{"measure": "points", "window": "half_year", "threshold": 3000}],
            "requires_card": True,
            "apply": "manual",
        },
    ]
}


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def call(client, method: str, path: str, body=None, headers=AUTH, **kwargs):
    if body is not None and "data" not in kwargs:
        kwargs["json"] = body
    resp = await client.request(method, path, headers=headers, **kwargs)
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, data


async def seed(client) -> str:
    """Store S001 with assistant A001; returns the assistant's token."""
    status, _ = await call(
        client, "POST", "/api/stores", {"code": "S001", "name": "一店", "city": "上海"}
    )
    assert status == 201
    status, body = await call(
        client, "POST", "/api/assistants", {"code": "A001", "name": "王丽", "store": "S001"}
    )
    assert status == 201
    return body["token"]


def purchase(receipt: str = "R1", amount="1234.50", **extra) -> dict:
    body = {
        "receipt_no": receipt,
        "phone": "13800138000",
        "store": "S001",
        "assistant": "A001",
        "amount": amount,
        "at": AT,
        "items": [{"sku": "K1", "name": "衬衫", "category": "shirts", "qty": 1, "amount": amount}],
    }
    body.update(extra)
    return body


async def member(client, phone: str = PHONE) -> dict:
    status, body = await call(client, "GET", f"/api/members/{phone.replace('+', '%2B')}")
    assert status == 200, body
    return body


# --------------------------------------------------------------------------- health


async def test_healthz(client):
    status, body = await call(client, "GET", "/healthz", headers={})
    assert (status, body) == (200, {"status": "ok"})


# --------------------------------------------------------------------------- auth

ROUTES = [
    ("POST", "/api/stores", {"code": "S9", "name": "n", "city": "c"}),
    ("POST", "/api/assistants", {"code": "A9", "name": "n", "store": "S001"}),
    ("POST", "/api/members", {"phone": "13900139000"}),
    ("GET", "/api/members/13800138000", None),
    ("POST", "/api/members/13800138000/stop", None),
    ("POST", "/api/members/13800138000/resume", None),
    ("POST", "/api/purchases", None),
    ("POST", "/api/visits", {"member": PHONE, "assistant": "A001"}),
    ("GET", "/api/card-applications", None),
    ("POST", "/api/card-applications", {"member": PHONE, "tier": "gold"}),
    ("POST", "/api/card-applications/1/status", {"status": "entered"}),
    ("GET", "/api/eligible-members", None),
]
BAD_AUTH = [
    {},
    {"Authorization": "Bearer wrong-key-0123456789"},
    {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": f"Bearer {API_KEY}x"},
    {"Authorization": "Bearer"},
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_route_needs_the_api_key(client, method, path, body):
    if path == "/api/purchases":
        body = purchase()
    for headers in BAD_AUTH:
        resp = await client.request(method, path, json=body, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await resp.json())["field"] == "authorization"


async def test_unauthenticated_requests_change_nothing(client):
    await call(client, "POST", "/api/stores", {"code": "S1", "name": "n", "city": "c"}, headers={})
    await call(client, "POST", "/api/members", {"phone": PHONE}, headers={})
    await call(client, "POST", "/api/purchases", purchase(store="S1"), headers={})
    status, body = await call(client, "GET", f"/api/members/{PHONE.replace('+', '%2B')}")
    assert (status, body["field"]) == (404, "phone")
    status, body = await call(
        client, "POST", "/api/assistants", {"code": "A", "name": "n", "store": "S1"}
    )
    assert (status, body["field"]) == (422, "store")


async def test_a_second_key_works_too(aiohttp_client, make_settings):
    other = "another-key-0123456789"
    client = await aiohttp_client(create_app(make_settings(api={"keys": [API_KEY, other]})))
    status, _ = await call(
        client, "GET", "/api/card-applications", headers={"Authorization": f"Bearer {other}"}
    )
    assert status == 200


async def test_no_keys_configured_refuses_everything(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings(api={"keys": []})))
    status, _ = await call(client, "GET", "/api/card-applications")
    assert status == 401


# --------------------------------------------------------------------------- stores and assistants


async def test_stores_and_assistants(client):
    status, body = await call(
        client, "POST", "/api/stores", {"code": "S001", "name": "一店", "city": "上海"}
    )
    assert (status, body) == (201, {"code": "S001", "name": "一店", "city": "上海"})
    status, body = await call(
        client, "POST", "/api/stores", {"code": "S001", "name": "一店", "city": "北京"}
    )
    assert (status, body["city"]) == (200, "北京")

    status, body = await call(
        client, "POST", "/api/assistants", {"code": "A001", "name": "王丽", "store": "S001"}
    )
    assert status == 201 and body["code"] == "A001" and len(body["token"]) >= 40
    status, again = await call(
        client, "POST", "/api/assistants", {"code": "A001", "name": "王丽", "store": "S001"}
    )
    assert status == 200 and "token" not in again
    status, rotated = await call(
        client,
        "POST",
        "/api/assistants",
        {"code": "A001", "name": "王丽", "store": "S001", "rotate_token": True},
    )
    assert status == 200 and rotated["token"] not in (None, body["token"])


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/stores", {"code": "S1", "name": "n"}, 201, None),
        ("/api/stores", {"code": "S1"}, 422, "name"),
        ("/api/stores", {"code": 5, "name": "n"}, 422, "code"),
        ("/api/stores", {"code": "S1", "name": "n", "phone": "x"}, 422, "phone"),
        ("/api/assistants", {"code": "A1", "name": "n", "store": "NOPE"}, 422, "store"),
        ("/api/assistants", {"code": "A1", "name": "n"}, 422, "store"),
        (
            "/api/assistants",
            {"code": "A1", "name": "n", "store": "S001", "rotate_token": "y"},
            422,
            "rotate_token",
        ),
    ],
)
async def test_store_and_assistant_input(client, path, body, status, field):
    await seed(client)
    got, answer = await call(client, "POST", path, body)
    assert got == status
    if field:
        assert answer["field"] == field


# --------------------------------------------------------------------------- members


async def test_member_create_update_and_read(client):
    await seed(client)
    body = {
        "phone": "138 0013 8000",
        "name": "张三",
        "gender": "女",
        "birthday": "1990-05-20",
        "birthday_calendar": "solar",
        "wedding_anniversary": "10-01",
        "store": "S001",
        "assistant": "A001",
        "card_no": "C0001",
        "preferred_contact": "19:00-21:00",
        "wechat_openid": "o-abc",
    }
    status, view = await call(client, "POST", "/api/members", body)
    assert status == 201
    assert view["phone"] == PHONE
    assert view["gender"] == "F" and view["birthday"] == "1990-05-20"
    assert (view["store"], view["assistant"], view["card_no"]) == ("S001", "A001", "C0001")
    assert view["wechat_openid"] == "o-abc"
    assert (view["points"], view["tier"], view["cumulative_spend"]) == (0, "points", "0.00")
    assert view["stopped"] is False and view["vouchers"] == [] and view["card_applications"] == []

    status, view = await call(client, "POST", "/api/members", {"phone": PHONE, "name": "张三丰"})
    assert status == 200
    assert (view["name"], view["card_no"], view["birthday"]) == ("张三丰", "C0001", "1990-05-20")

    for spelling in ("13800138000", "%2B8613800138000", "+8613800138000"):
        status, got = await call(client, "GET", f"/api/members/{spelling}")
        assert status == 200 and got["name"] == "张三丰"


async def test_member_lookup_errors(client):
    status, body = await call(client, "GET", "/api/members/13900139000")
    assert (status, body["field"]) == (404, "phone")
    status, body = await call(client, "GET", "/api/members/12345")
    assert (status, body["field"]) == (422, "phone")


async def test_wrong_content_type_is_fine_when_the_body_is_json(client):
    data = json.dumps({"phone": PHONE})
    status, _ = await call(
        client, "POST", "/api/members", data=data, headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert status == 201


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "x"}, 422, "phone"),
        ({"phone": "12345"}, 422, "phone"),
        ({"phone": 13800138000}, 422, "phone"),
        ({"phone": PHONE, "nickname": "x"}, 422, "nickname"),
        ({"phone": PHONE, "store": "NOPE"}, 422, "store"),
        ({"phone": PHONE, "assistant": "NOPE"}, 422, "assistant"),
        ({"phone": PHONE, "gender": "X"}, 422, "gender"),
        ({"phone": PHONE, "birthday": "02-30"}, 422, "birthday"),
        ({"phone": PHONE, "birthday": "1990-13-01"}, 422, "birthday"),
        ({"phone": PHONE, "preferred_contact": "evening"}, 422, "preferred_contact"),
        ({"phone": PHONE, "name": ["x"]}, 422, "name"),
    ],
)
async def test_member_bad_input(client, body, status, field):
    await seed(client)
    got, answer = await call(client, "POST", "/api/members", body)
    assert (got, answer["field"]) == (status, field)
    assert set(answer) == {"error", "field"}
    status, _ = await call(client, "GET", "/api/members/13800138000")
    assert status == 404


async def test_card_number_conflict_writes_nothing(client):
    await call(client, "POST", "/api/members", {"phone": PHONE, "card_no": "C1"})
    status, body = await call(
        client, "POST", "/api/members", {"phone": "13900139000", "card_no": "C1"}
    )
    assert (status, body["field"]) == (409, "card_no")
    status, _ = await call(client, "GET", "/api/members/13900139000")
    assert status == 404


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("{not json", "malformed JSON"),
        ("", "malformed JSON"),
        ('{"phone": NaN}', "malformed JSON"),
        (b"\xff\xfe{}", "malformed JSON"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "malformed JSON"),
        ("[1, 2]", "the JSON body must be an object"),
        ('"a string"', "the JSON body must be an object"),
        ("null", "the JSON body must be an object"),
    ],
)
async def test_bodies_that_are_not_json_objects(client, data, error):
    for path in ("/api/members", "/api/purchases", "/api/stores"):
        status, body = await call(client, "POST", path, data=data)
        assert (status, body) == (400, {"error": error, "field": None})


async def test_oversized_body_is_413_json(client):
    big = json.dumps({"phone": PHONE, "name": "x" * (70 * 1024)})
    for path in ("/api/members", "/api/purchases"):
        status, body = await call(client, "POST", path, data=big)
        assert status == 413
        assert body["field"] is None and "65536" in body["error"]
    status, _ = await call(client, "GET", "/api/members/13800138000")
    assert status == 404


async def test_error_middleware_turns_an_oversized_api_body_into_json(aiohttp_client, settings):
    async def echo(request):  # a route without the operator wrapper (e.g. /api/greetings)
        return web.json_response({"size": len(await request.read())})

    app = create_app(settings)
    app.router.add_post("/api/echo", echo)
    client = await aiohttp_client(app)
    status, body = await call(client, "POST", "/api/echo", data=b"x" * (65 * 1024))
    assert (status, body) == (413, {"error": "body larger than 65536 bytes", "field": None})
    status, body = await call(client, "POST", "/api/echo", data=b"x" * 1024)
    assert (status, body) == (200, {"size": 1024})


async def test_errors_are_logged_once_with_no_phone(client, caplog):
    caplog.set_level(logging.INFO, logger="memberbot.api")
    await call(client, "GET", "/api/members/13900139000")
    lines = [r.getMessage() for r in caplog.records if r.name == "memberbot.api"]
    assert len(lines) == 1
    assert "404" in lines[0] and "13900139000" not in lines[0]


# --------------------------------------------------------------------------- purchases


async def test_purchase_recorded_once(client):
    await seed(client)
    status, body = await call(client, "POST", "/api/purchases", purchase())
    assert status == 201
    assert body["receipt_no"] == "R1" and body["member"] == PHONE
    assert (body["points"], body["amount"], body["store"]) == (1234, "1234.50", "S001")
    status, again = await call(client, "POST", "/api/purchases", purchase())
    assert status == 200 and again["points"] == 1234
    view = await member(client)
    assert (view["points"], view["cumulative_spend"]) == (1234, "1234.50")
    assert view["last_purchase"] == AT


async def test_a_recorded_receipt_with_another_amount_is_a_conflict(client):
    await seed(client)
    await call(client, "POST", "/api/purchases", purchase())
    status, body = await call(client, "POST", "/api/purchases", purchase(amount="1234.5"))
    assert status == 200  # the same sale, written another way
    status, body = await call(client, "POST", "/api/purchases", purchase(amount="1300"))
    assert (status, body["field"]) == (409, "amount")
    assert "already recorded" in body["error"] and "1234.50" in body["error"]
    assert "1300" in body["error"]
    status, body = await call(client, "POST", "/api/purchases", purchase(at="2026-03-11T10:00:00"))
    assert (status, body["field"]) == (409, "receipt_no") and "at " in body["error"]
    view = await member(client)
    assert (view["points"], view["cumulative_spend"]) == (1234, "1234.50")


async def test_purchase_for_an_unknown_phone_enrols_the_member(client):
    await seed(client)
    status, _ = await call(
        client, "POST", "/api/purchases", purchase(phone="13700137000", amount=88)
    )
    assert status == 201
    view = await member(client, "+8613700137000")
    assert (view["points"], view["store"], view["join_date"]) == (88, "S001", "2026-03-10")


async def test_concurrent_identical_purchases_count_once(client):
    await seed(client)
    results = await asyncio.gather(
        *(call(client, "POST", "/api/purchases", purchase()) for _ in range(5))
    )
    assert sorted(status for status, _ in results) == [200, 200, 200, 200, 201]
    assert (await member(client))["points"] == 1234


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "abc"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "1.234"}, "amount"),
        ({"items": {"sku": "K1"}}, "items"),
        (
            {"items": [{"sku": "K1", "name": "n", "category": "c", "qty": "x", "amount": "1"}]},
            "items.0.qty",
        ),
        ({"at": "yesterday"}, "at"),
        ({"phone": "12345"}, "phone"),
        ({"store": "NOPE"}, "store"),
        ({"assistant": "NOPE"}, "assistant"),
        ({"colour": "red"}, "colour"),
        ({"receipt_no": None}, "receipt_no"),
        ({"amount": "1e30"}, "amount"),
        ({"amount": "99999999999999999999.99"}, "amount"),
        (
            {"items": [{"sku": "K1", "name": "n", "category": "c", "qty": 10**30, "amount": "1"}]},
            "items.0.qty",
        ),
        (
            {"items": [{"sku": "K1", "name": "n", "category": "c", "qty": 1, "amount": "1e25"}]},
            "items.0.amount",
        ),
        ({"at": "9999-12-31T23:59:59+14:00"}, "at"),
        ({"at": "0001-01-01T00:00:00"}, "at"),
    ],
)
async def test_purchase_bad_input(client, change, field):
    await seed(client)
    status, body = await call(client, "POST", "/api/purchases", purchase(**change))
    assert (status, body["field"]) == (422, field)
    status, _ = await call(client, "GET", "/api/members/13800138000")
    assert status == 404


async def test_purchase_missing_fields(client):
    await seed(client)
    for name in ("receipt_no", "store", "amount", "at"):
        body = purchase()
        del body[name]
        status, answer = await call(client, "POST", "/api/purchases", body)
        assert (status, answer) == (422, {"error": "missing field", "field": name})


# --------------------------------------------------------------------------- visits and consent


async def test_visit_counts_once_a_day(client):
    await seed(client)
    await call(client, "POST", "/api/members", {"phone": PHONE})
    visit = {"member": "13800138000", "assistant": "A001", "at": AT}
    status, body = await call(client, "POST", "/api/visits", visit)
    assert (status, body["posted"], body["points"]) == (201, True, 10)
    status, body = await call(
        client, "POST", "/api/visits", {**visit, "at": "2026-03-10T20:00:00+08:00"}
    )
    assert (status, body["posted"], body["points"]) == (200, False, 10)
    assert (await member(client))["visits"] == 1
    for bad, code, field in [
        ({**visit, "member": "13900139000"}, 404, "member"),
        ({**visit, "assistant": "NOPE"}, 422, "assistant"),
        ({**visit, "at": "soon"}, 422, "at"),
        ({**visit, "at": 1773122400}, 422, "at"),
        ({**visit, "at": "9999-12-31T23:59:59"}, 422, "at"),
        ({**visit, "at": "1999-12-31T23:59:59+08:00"}, 422, "at"),
    ]:
        status, body = await call(client, "POST", "/api/visits", bad)
        assert (status, body["field"]) == (code, field)


async def test_operator_records_stop_and_resume(client):
    await call(client, "POST", "/api/members", {"phone": PHONE})
    status, body = await call(
        client, "POST", "/api/members/13800138000/stop", {"note": "asked by phone"}
    )
    assert (status, body) == (200, {"phone": PHONE, "stopped": True, "changed": True})
    status, body = await call(client, "POST", "/api/members/13800138000/stop")
    assert (status, body["changed"]) == (200, False)
    view = await member(client)
    assert view["stopped"] is True
    assert [(c["action"], c["channel"], c["source"]) for c in view["consent"]] == [
        ("stop", "staff", "operator: asked by phone")
    ]
    status, body = await call(client, "POST", "/api/members/13800138000/resume")
    assert (status, body["stopped"], body["changed"]) == (200, False, True)
    assert len((await member(client))["consent"]) == 2
    status, body = await call(client, "POST", "/api/members/13900139000/stop")
    assert (status, body["field"]) == (404, "phone")


# --------------------------------------------------------------------------- card applications


async def test_card_application_steps(client):
    await seed(client)
    status, _ = await call(client, "POST", "/api/purchases", purchase(amount="3000"))
    assert status == 201
    status, apps = await call(client, "GET", "/api/card-applications?status=applied")
    assert status == 200 and len(apps) == 1
    app = apps[0]
    assert (app["member"], app["tier"], app["status"], app["store"]) == (
        PHONE,
        "gold",
        "applied",
        "S001",
    )
    assert set(app) >= {"id", "member", "tier", "status", "store", "pickup_date", "updated_at"}
    path = f"/api/card-applications/{app['id']}/status"

    status, body = await call(client, "POST", path, {"status": "approved"})
    assert (status, body["field"]) == (409, "status")
    for step in ("entered", "sent_to_head_office", "approved"):
        status, body = await call(client, "POST", path, {"status": step})
        assert (status, body["status"]) == (200, step)
    status, body = await call(
        client, "POST", path, {"status": "notified", "pickup_date": "2026-03-15"}
    )
    assert (status, body["pickup_date"]) == (200, "2026-03-15")
    status, apps = await call(client, "GET", "/api/card-applications?status=notified")
    assert [a["id"] for a in apps] == [app["id"]]
    assert (await member(client))["card_applications"][0]["status"] == "notified"

    for bad, code, field in [
        ({"status": "flying"}, 422, "status"),
        ({}, 422, "status"),
        ({"status": "picked_up", "pickup_date": "tomorrow"}, 422, "pickup_date"),
    ]:
        status, body = await call(client, "POST", path, bad)
        assert (status, body["field"]) == (code, field)
    status, body = await call(client, "POST", path, {"status": "flying"})
    assert body["error"].endswith(
        "valid: applied, entered, sent_to_head_office, approved, notified, notified_again, "
        "mailed, picked_up, rejected, cancelled"
    )
    for missing in ("/api/card-applications/999/status", "/api/card-applications/x/status"):
        status, body = await call(client, "POST", missing, {"status": "entered"})
        assert (status, body["field"]) == (404, "id")
    status, body = await call(client, "GET", "/api/card-applications?status=flying")
    assert (status, body["field"]) == (422, "status")


async def test_staff_apply_for_an_eligible_member(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings(tiers=MANUAL_GOLD)))
    await seed(client)
    await call(client, "POST", "/api/members", {"phone": "13900139000"})
    status, body = await call(
        client, "POST", "/api/card-applications", {"member": "13900139000", "tier": "gold"}
    )
    assert (status, body["field"]) == (409, "tier")

    await call(client, "POST", "/api/purchases", purchase(amount="3000"))
    status, eligible = await call(client, "GET", "/api/eligible-members")
    assert status == 200
    assert [(m["member"], m["eligible_tier"], m["store"]) for m in eligible] == [
        (PHONE, "gold", "S001")
    ]
    status, eligible = await call(client, "GET", "/api/eligible-members?store=NOPE")
    assert (status, eligible["field"]) == (422, "store")

    status, app = await call(
        client, "POST", "/api/card-applications", {"member": PHONE, "tier": "gold"}
    )
    assert (status, app["status"], app["member"]) == (201, "applied", PHONE)
    status, again = await call(
        client, "POST", "/api/card-applications", {"member": PHONE, "tier": "gold"}
    )
    assert (status, again["id"]) == (200, app["id"])
    assert (await call(client, "GET", "/api/eligible-members"))[1] == []
    for bad, code, field in [
        ({"member": "13700137000", "tier": "gold"}, 404, "member"),
        ({"member": PHONE, "tier": "platinum"}, 422, "tier"),
        ({"member": PHONE}, 422, "tier"),
    ]:
        status, body = await call(client, "POST", "/api/card-applications", bad)
        assert (status, body["field"]) == (code, field)


async def test_json_answers_are_readable_utf8(client):
    await seed(client)
    await call(client, "POST", "/api/members", {"phone": "13800138000", "name": "张三"})
    resp = await client.get(
        "/api/members/13800138000", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    raw = await resp.read()
    assert "张三".encode() in raw
    assert b"\\u" not in raw


async def test_the_member_view_shows_a_number_the_provider_refused(client, sessions):
    from datetime import UTC, datetime

    from models.db import transaction
    from models.outbox.receipts import mark_address_bad

    await seed(client)
    await call(client, "POST", "/api/members", {"phone": "13800138000", "store": "S001"})
    assert (await member(client))["bad_number"] is False
    async with transaction(sessions) as s:
        await mark_address_bad(
            s, member_id=None, channel="sms", address=PHONE, reason="twilio 21211",
            now=datetime(2026, 3, 10, tzinfo=UTC),
        )  # fmt: skip
    assert (await member(client))["bad_number"] is True
