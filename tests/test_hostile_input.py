"""Hostile input at the HTTP edge (`bot.edge`, `models.strict`): bytes that are not UTF-8,
control characters, digits that are not 0-9, broken forms — always a 4xx, never a 500,
and nothing read or written in the database before authentication."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import func
from sqlmodel import select

from bot.app import create_app
from bot.conversation import Reply
from bot.router import item_number
from models.db import transaction
from models.tables.schema import METADATA
from tests.conftest import API_KEY
from tests.payloads import sms, twilio_signature
from tests.test_api import call, purchase, seed
from tests.test_staff_console import csrf_of, sign_in
from tests.test_staff_console import seed as seed_console

PUBLIC_URL = "http://bot.example.com"  # not https: the console cookie must not be Secure
AUTH = f"Bearer {API_KEY}".encode()


@pytest.fixture
async def client(aiohttp_client, make_settings):
    settings = make_settings(
        server={"public_url": PUBLIC_URL},
        sms={"provider": "console", "twilio": {"auth_token": "twilio-token"}},
    )
    return await aiohttp_client(create_app(settings))


async def row_counts(sessions) -> dict[str, int]:
    async with transaction(sessions) as s:
        return {
            t.name: (await s.exec(select(func.count()).select_from(t))).one()
            for t in METADATA.sorted_tables
        }


async def raw_request(client, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (aiohttp's client would refuse or re-encode them)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def post(path: str, content_type: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


FORM = b"application/x-www-form-urlencoded"
BROKEN_FORMS = [
    (FORM, b"From=\xff&Body=hi"),  # not UTF-8
    (FORM, b"From=%FF&Body=hi"),  # percent-encoded, not UTF-8 either
    (FORM, b"From=a%00b&Body=hi"),  # NUL
    (b"multipart/form-data", b"garbage"),  # no boundary
    (b"multipart/form-data; boundary=x", b"garbage"),
]


@pytest.mark.parametrize("path", ["/sms/twilio", "/sms/twilio/status", "/staff/signin",
                                  "/staff/locale", "/staff/"])  # fmt: skip
@pytest.mark.parametrize(("content_type", "body"), BROKEN_FORMS)
async def test_a_broken_form_is_refused_before_anything_is_read(
    client, sessions, path, content_type, body
):
    before = await row_counts(sessions)
    status, answer = await raw_request(client, post(path, content_type, body))
    assert status in (400, 415), answer
    assert b"Traceback" not in answer
    assert await row_counts(sessions) == before


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/members/%2B8613800138000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe\r\n\r\n",
        b"GET /staff/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Cookie: memberbot_staff=\xff\xfe\r\n\r\n",
    ],
)
async def test_header_bytes_that_are_not_utf8_get_400(client, sessions, request_bytes):
    before = await row_counts(sessions)
    status, answer = await raw_request(client, request_bytes)
    assert status == 400, answer
    assert await row_counts(sessions) == before


# --------------------------------------------------------------------------- NUL and controls


@pytest.mark.parametrize(
    "path",
    [
        "/api/card-applications?status=%00",
        "/api/card-applications?status=%FF",
        "/api/members/%2B86138001%00",
        "/api/members/%FF",
        "/staff/signin?next=/staff/%01",
    ],
)
async def test_control_characters_and_bad_bytes_in_the_url_get_400(client, path):
    resp = await client.get(path, headers={"Authorization": f"Bearer {API_KEY}"})
    assert resp.status == 400
    body = await resp.json()
    assert body["field"] in ("path", "url", "status", "next")


@pytest.mark.parametrize(
    "body",
    [
        {"phone": "13800138000", "name": "张\u0000三"},
        {"phone": "13800138000", "name": "ok", "store": "\u0007"},
        {"phone": "13800138000", "name": "\ud800"},
        {"phone": "13800138000", "name\u0000": "x"},
    ],
)
async def test_control_characters_in_json_get_400_naming_the_field(client, sessions, body):
    await seed(client)
    before = await row_counts(sessions)
    status, answer = await call(client, "POST", "/api/members", body)
    assert status == 400, answer
    assert answer["error"].startswith("control characters")
    assert await row_counts(sessions) == before


async def test_a_nested_control_character_is_found(client):
    await seed(client)
    body = purchase()
    body["items"][0]["name"] = "衬\u0000衫"
    status, answer = await call(client, "POST", "/api/purchases", body)
    assert (status, answer["field"]) == (400, "items.0.name")


async def test_a_signed_sms_with_a_nul_is_refused_and_leaves_nothing_behind(client, sessions):
    form = sms("+8613800138000", "PICKUP a\x00b")
    headers = {"X-Twilio-Signature": twilio_signature(PUBLIC_URL + "/sms/twilio", form,
                                                      "twilio-token")}  # fmt: skip
    before = await row_counts(sessions)
    resp = await client.post("/sms/twilio", data=form, headers=headers)
    assert resp.status == 400
    assert await row_counts(sessions) == before  # no inbound row left `processing`


async def test_twiml_never_carries_characters_xml_cannot_hold(aiohttp_client, make_settings):
    class Echo:
        async def handle(self, inbound):
            return Reply("领卡 a\x00b\x1b")

    settings = make_settings(
        server={"public_url": PUBLIC_URL}, sms={"twilio": {"auth_token": "twilio-token"}}
    )
    client = await aiohttp_client(create_app(settings, conversation=Echo()))
    form = sms("+8613800138000", "PICKUP")
    del form["MessageSid"]  # answered directly: the fake's answer is not for the inbound log
    sig = twilio_signature(PUBLIC_URL + "/sms/twilio", form, "twilio-token")
    resp = await client.post("/sms/twilio", data=form, headers={"X-Twilio-Signature": sig})
    assert resp.status == 200
    assert ET.fromstring(await resp.text()).find("Message").text == "领卡 ab"


async def test_a_nul_in_the_staff_search_or_the_next_page_gets_400(client, sessions, settings):
    world = await seed_console(sessions, settings)
    await sign_in(client, world.tokens["A001"])
    token = await csrf_of(client)
    resp = await client.post("/staff/", data={"csrf_token": token, "q": "张\x00"})
    assert resp.status == 400
    resp = await client.post(
        "/staff/locale",
        data={"csrf_token": token, "locale": "en", "next": "/staff/\x00"},
        allow_redirects=False,
    )
    assert resp.status == 400  # was: the connection dropped (NUL in Location)


# --------------------------------------------------------------------------- digits


@pytest.mark.parametrize("raw", ["%C2%B2", "%E2%91%A0", "%D9%A1", "%EF%BC%91", "9" * 11])
async def test_an_id_in_a_path_is_ascii_digits_that_fit(client, sessions, settings, raw):
    world = await seed_console(sessions, settings)
    status, answer = await call(
        client, "POST", f"/api/card-applications/{raw}/status", {"status": "approved"}
    )
    assert status == 404, answer
    await sign_in(client, world.tokens["A001"])
    resp = await client.get(f"/staff/members/{raw}")  # %D9%A1 opened member 1
    assert resp.status == 404


async def test_a_phone_in_other_digits_is_not_a_second_member(client):
    await seed(client)
    status, _ = await call(client, "POST", "/api/members", {"phone": "13800138000", "name": "a"})
    assert status == 201
    status, _ = await call(client, "POST", "/api/members", {"phone": "+441234567890"})
    assert status == 201
    for other in ("١٣٨٠٠١٣٨٠٠٠", "+44١٢٣٤٥٦٧٨٩٠", "+44١234567890"):  # Arabic-Indic digits
        status, answer = await call(client, "POST", "/api/members", {"phone": other})
        assert (status, answer["field"]) == (422, "phone"), other
    full_width = "１３８００１３８０００"  # the same member, typed on a full-width keyboard
    status, _ = await call(client, "POST", "/api/members", {"phone": full_width, "name": "a"})
    assert status == 200


@pytest.mark.parametrize("amount", ["1_000", "１０", "𝟏𝟎", "1e3", "١٠"])
async def test_money_is_written_with_the_digits_0_to_9(client, sessions, amount):
    await seed(client)
    status, answer = await call(client, "POST", "/api/purchases", purchase(amount=amount))
    assert status == 422, answer
    assert answer["field"] == "amount"


@pytest.mark.parametrize("qty", ["1_0", "２"])
async def test_an_item_count_is_written_with_the_digits_0_to_9(client, qty):
    await seed(client)
    body = purchase()
    body["items"][0]["qty"] = qty
    status, answer = await call(client, "POST", "/api/purchases", body)
    assert (status, answer["field"]) == (422, "items.0.qty")


def test_chat_digits_are_0_to_9_after_folding_full_width():
    from datetime import date

    from bot.handlers.daytext import parse_day
    from bot.router import Intent, route

    today = date(2026, 12, 2)
    assert parse_day("١٢-٠٣", today) is None  # int() read Arabic-Indic digits silently
    assert parse_day("２０２６-12-05", today) is None  # parse_day gets normalised text
    assert parse_day("12-05", today) == date(2026, 12, 5)
    assert route("١٢٣٤٥٦").intent is not Intent.CODE
    assert route("１２３４５６").intent is Intent.CODE  # full-width, as a member types it


def test_a_reward_number_is_bounded_and_ascii():
    assert item_number("2") == 2
    assert item_number("9" * 5000) == 0  # no such reward; int() refused 4,300+ digits
    assert item_number("١") is None  # Arabic-Indic: not a number here


@pytest.mark.parametrize("next_", ["/staff/" + "a" * 9000, "/staff/\t", "/staff/\r\nX: y"])
async def test_the_page_to_return_to_is_a_short_console_path(client, sessions, settings, next_):
    world = await seed_console(sessions, settings)
    await sign_in(client, world.tokens["A001"])
    resp = await client.post(
        "/staff/locale",
        data={"csrf_token": await csrf_of(client), "locale": "en", "next": next_},
        allow_redirects=False,
    )  # a 9,000-byte Location header was more than clients read (8,190)
    assert (resp.status, resp.headers["Location"]) == (303, "/staff/")
