"""Aliyun SMS end to end: the real app with `sms.provider = "aliyun"`, the official SDK
talking to a fake Aliyun on loopback (tests/fake_aliyun.py), members' up messages and
delivery reports pushed as Aliyun pushes them, and the outbox sending approved
templates."""

from __future__ import annotations

import pytest

from bot.app import create_app
from bot.appkeys import INBOUND_LOG, SMS_SENDER
from scheduler.sms_review import template_sheet
from scheduler.text import render
from tests.conftest import API_KEY
from tests.fake_aliyun import (
    ALIYUN_ACCESS_KEY_ID,
    ALIYUN_ACCESS_KEY_SECRET,
    ALIYUN_PUSH_TOKEN,
    ALIYUN_SIGN_NAME,
    FakeAliyunSms,
    report,
    up_message,
)

PHONE = "+8613800138000"
NATIONAL = "13800138000"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
OK = {"code": 0, "msg": "接收成功"}
UP = f"/sms/aliyun/up?token={ALIYUN_PUSH_TOKEN}"
REPORT = f"/sms/aliyun/report?token={ALIYUN_PUSH_TOKEN}"


def all_codes() -> dict[str, str]:
    """A code for every kind and reply: SMS_<key> (so a test sees which template went)."""
    keys = [e.shape.key for e in template_sheet("zh_CN")]
    return {k: "SMS_" + k.upper() for k in keys}


def aliyun_config(fake: FakeAliyunSms, **overrides) -> dict:
    return {
        "provider": "aliyun",
        "aliyun": {
            "access_key_id": ALIYUN_ACCESS_KEY_ID,
            "access_key_secret": ALIYUN_ACCESS_KEY_SECRET,
            "sign_name": ALIYUN_SIGN_NAME,
            "endpoint": fake.base_url,
            "push_token": ALIYUN_PUSH_TOKEN,
            "variable_max_length": 500,
            "templates": all_codes(),
            **overrides,
        },
    }


@pytest.fixture
async def fake_aliyun(aiohttp_server):
    fake = FakeAliyunSms()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def make_client(aiohttp_client, make_settings, fake_aliyun):
    async def build(**overrides):
        settings = make_settings(sms=aliyun_config(fake_aliyun, **overrides))
        client = await aiohttp_client(create_app(settings))
        for path, body in (
            ("/api/stores", {"code": "S001", "name": "南京西路店", "city": "上海"}),
            ("/api/assistants", {"code": "A001", "name": "王丽", "store": "S001"}),
            ("/api/members", {"phone": PHONE, "name": "张三", "store": "S001",
                              "assistant": "A001"}),
            ("/api/purchases", {"receipt_no": "R1", "phone": PHONE, "store": "S001",
                                "assistant": "A001", "amount": "3500.00",
                                "at": "2026-11-20T15:00:00+08:00", "items": []}),
        ):  # fmt: skip
            resp = await client.post(path, json=body, headers=AUTH)
            assert resp.status in (200, 201), await resp.text()
        return client

    return build


@pytest.fixture
async def client(make_client):
    return await make_client()


async def push(client, items, path: str = UP) -> None:
    resp = await client.post(path, json=items)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == OK
    await client.app[INBOUND_LOG].drain(5.0)


# --------------------------------------------------------------------------- up messages


async def test_an_up_message_is_answered_by_sendsms_with_its_reply_template(client, fake_aliyun):
    await push(client, [up_message(NATIONAL, "积分", sequence_id=101)])
    [sent] = fake_aliyun.sent
    assert sent["phone"] == NATIONAL and sent["sign_name"] == ALIYUN_SIGN_NAME
    assert sent["template_code"].startswith("SMS_REPLY_POINTS")  # one of its variants
    assert sent["params"]["points"] == "3,500" and sent["params"]["tier"] == "金卡"
    assert sent["params"]["name"] == "张三，"


async def test_a_repushed_message_has_one_effect(client, fake_aliyun):
    for _ in range(3):
        await push(client, [up_message(NATIONAL, "兑换 1", sequence_id=202)])
    assert [s["template_code"] for s in fake_aliyun.sent] == ["SMS_REPLY_REDEEM_ASK"]


async def test_one_push_carries_several_messages(client, fake_aliyun):
    await push(client, [up_message(NATIONAL, "积分", sequence_id=1),
                        up_message(NATIONAL, "券", sequence_id=2)])  # fmt: skip
    codes = sorted(s["template_code"].rsplit("_", 1)[0] for s in fake_aliyun.sent)
    assert codes == ["SMS_REPLY_POINTS", "SMS_REPLY_VOUCHERS"]


@pytest.mark.parametrize("word", ["退订", "TD", "T", "R", "r", "不接受"])
async def test_stop_words_stop_on_this_channel(client, fake_aliyun, word):
    await push(client, [up_message(NATIONAL, word, sequence_id=7)])
    assert [s["template_code"] for s in fake_aliyun.sent] == ["SMS_REPLY_STOP_DONE"]
    resp = await client.get(f"/api/members/{PHONE}", headers=AUTH)
    assert (await resp.json())["stopped"] is True


async def test_a_reply_without_a_code_is_not_sent(make_client, fake_aliyun):
    codes = {k: v for k, v in all_codes().items() if not k.startswith("reply_points")}
    client = await make_client(templates=codes)
    await push(client, [up_message(NATIONAL, "积分", sequence_id=9)])
    assert fake_aliyun.sent == []


@pytest.mark.parametrize("path", [UP, REPORT])
@pytest.mark.parametrize("query", ["", "?token=wrong", "?token=", f"?token={ALIYUN_PUSH_TOKEN}x"])
async def test_a_push_without_the_secret_token_is_refused(client, fake_aliyun, path, query):
    resp = await client.post(path.split("?")[0] + query, json=[up_message(NATIONAL, "积分")])
    assert resp.status == 403
    assert (await resp.json())["field"] == "token"
    await client.app[INBOUND_LOG].drain(5.0)
    assert fake_aliyun.sent == []


async def test_no_push_token_configured_refuses_everything(make_client, fake_aliyun):
    client = await make_client(push_token="")
    resp = await client.post("/sms/aliyun/up?token=", json=[up_message(NATIONAL, "积分")])
    assert resp.status == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b'{"phone_number": "13800138000"}', None),
        (b"[1, 2]", None),
        (b'[{"content": "x", "sequence_id": 1}]', "phone_number"),
        (b'[{"phone_number": "12", "content": "x", "sequence_id": 1}]', "phone_number"),
        (b'[{"phone_number": "13800138000", "content": "x"}]', "sequence_id"),
        (b'[{"phone_number": "13800138000", "content": "x", "sequence_id": " "}]',
         "sequence_id"),
        (b'[{"phone_number": "13800138000", "content": ["x"], "sequence_id": 1}]', "content"),
        (b'[{"phone_number": "13800138000", "content": "a\\u0000", "sequence_id": 1}]',
         "0.content"),
        (("[" + ",".join(['{"phone_number":"13800138000","sequence_id":1}'] * 101) + "]")
         .encode(), None),
        (b'[{"phone_number": "13800138000", "content": "' + b"x" * 1001 + b'", '
         b'"sequence_id": 1}]', "content"),
    ],
)  # fmt: skip
async def test_hostile_up_pushes_are_refused_with_a_reason(client, fake_aliyun, body, field):
    resp = await client.post(UP, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"] and answer["field"] == field
    await client.app[INBOUND_LOG].drain(5.0)
    assert fake_aliyun.sent == []


# ------------------------------------------------------------------------------ reports


async def test_a_report_for_an_unknown_message_is_acknowledged(client):
    await push(client, [report("999^0", NATIONAL)], REPORT)


@pytest.mark.parametrize(
    "body",
    [
        b'[{"biz_id": "1^0"}]',
        b'[{"success": true}]',
        b'{"biz_id": "1^0"}',
        b'[{"biz_id": "", "success": true}]',
        b'[{"biz_id": "1^0", "success": "true"}]',
    ],
)
async def test_hostile_reports_are_refused(client, body):
    resp = await client.post(REPORT, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400


async def test_the_binding_code_goes_as_its_template(make_client, fake_aliyun):
    client = await make_client()
    sender = client.app[SMS_SENDER]
    body = render("bind_code_sms", "zh_CN", brand="静安时装", code="654321", minutes=10)
    sent = await sender.send(PHONE, body)
    [call] = fake_aliyun.sent
    assert call["template_code"] == "SMS_REPLY_BIND_CODE_SMS"
    assert "654321" in call["params"]["code_etc"]
    assert sent.provider_id == call["biz_id"]


async def test_an_unknown_number_gets_the_not_a_member_answer(client, fake_aliyun):
    await push(client, [up_message("13900139000", "积分", sequence_id=11)])
    [sent] = fake_aliyun.sent
    assert (sent["phone"], sent["template_code"]) == ("13900139000", "SMS_REPLY_NOT_MEMBER")
