"""End to end: the real member bot behind the real webhooks.

Requests are built with wechatpy's and twilio's own code (tests/payloads.py) and
go through `create_app` exactly as the platforms would send them; nothing in the
app is replaced. Every keyword of CONTRACT.md, in both languages, on WeChat
(plain and safe mode) and SMS.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.app import create_app
from bot.appkeys import SMS_SENDER
from tests.conftest import API_KEY
from tests.fakes import TWILIO_AUTH_TOKEN
from tests.payloads import (
    WECHAT_AES_KEY,
    aes,
    decrypt_reply,
    plain,
    reply_fields,
    sms,
    twilio_signature,
    wechat_settings,
    wechat_text,
)

PUBLIC_URL = "https://bot.example.com"
PHONE = "+8613800138000"
OPENID = "o_member_e2e"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MODES = ("wechat-plain", "wechat-aes", "sms")


@pytest.fixture
async def client(request, aiohttp_client, make_settings):
    # An AES key makes safe mode the only mode: a plain-mode test's app has none.
    callspec = getattr(request.node, "callspec", None)
    plain_mode = callspec is not None and callspec.params.get("mode") == "wechat-plain"
    settings = make_settings(
        server={"public_url": PUBLIC_URL},
        wechat=wechat_settings(aes_key="" if plain_mode else WECHAT_AES_KEY),
        sms={"provider": "console", "twilio": {"auth_token": TWILIO_AUTH_TOKEN}},
    )
    client = await aiohttp_client(create_app(settings))
    for path, body in (
        ("/api/stores", {"code": "S001", "name": "南京西路店", "city": "上海"}),
        ("/api/assistants", {"code": "A001", "name": "王丽", "store": "S001"}),
        (
            "/api/members",
            {"phone": PHONE, "name": "张三", "store": "S001", "assistant": "A001",
             "wechat_openid": OPENID, "address": "上海市静安区南京西路1000号"},
        ),
        (
            "/api/purchases",
            {"receipt_no": "R1", "phone": PHONE, "store": "S001", "assistant": "A001",
             "amount": "3500.00", "at": "2026-11-20T15:00:00+08:00",
             "items": [{"sku": "C1", "name": "羊毛大衣", "category": "coat", "qty": 1,
                        "amount": "3500.00"}]},
        ),
    ):  # fmt: skip
        resp = await client.post(path, json=body, headers=AUTH)
        assert resp.status in (200, 201), await resp.text()
    return client


async def say(client, mode: str, text: str, *, sender: str | None = None) -> str:
    """Send `text` as the member on `mode`; return the bot's answer as the member sees it."""
    if mode == "sms":
        form = sms(sender or PHONE, text)
        headers = {"X-Twilio-Signature": twilio_signature(f"{PUBLIC_URL}/sms/twilio", form)}
        resp = await client.post("/sms/twilio", data=form, headers=headers)
        body = await resp.text()
        assert resp.status == 200, body
        assert body.startswith("<?xml") and "<Response>" in body, body
        start, end = body.find("<Message>"), body.find("</Message>")
        assert start >= 0, body
        from xml.sax.saxutils import unescape

        return unescape(body[start + len("<Message>") : end])
    xml = wechat_text(sender or OPENID, text)
    query, data = aes(xml) if mode == "wechat-aes" else plain(xml)
    resp = await client.post("/wechat", params=query, data=data)
    body = await resp.text()
    assert resp.status == 200, body
    if mode == "wechat-aes":
        assert "<Encrypt>" in body, body
        body = decrypt_reply(body)
    else:
        assert "<Encrypt>" not in body
    return reply_fields(body)["Content"]


async def member(client) -> dict:
    resp = await client.get(f"/api/members/{PHONE}", headers=AUTH)
    assert resp.status == 200
    return await resp.json()


def english(word: str) -> bool:
    """The reply's language for a member with none set: the message's (JF, TD, "?" show none)."""
    return word.strip().upper() in {
        "POINTS", "BALANCE", "REDEEM", "REDEEM 1", "CONFIRM", "YES", "VOUCHERS", "PICKUP",
        "HELP", "INFO", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
        "OPTOUT", "START", "UNSTOP",
    }  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("word", ["积分", "查积分", "JF", "POINTS", "BALANCE", "ｊｆ", " 积分！"])
async def test_points(client, mode, word):
    answer = await say(client, mode, word)
    if english(word):  # an English keyword gets an English answer
        assert "Points: 3,500" in answer and "Gold card" in answer, answer
        return
    assert "当前积分：3,500" in answer, answer
    assert "金卡" in answer  # 3,500 points within half a year: gold (Scheme A)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("word", ["兑换", "DH", "REDEEM"])
async def test_rewards_list(client, mode, word):
    answer = await say(client, mode, word)
    want = "1. 300-yuan voucher (3,000 points)" if english(word) else "1. 300元代金券（3,000 分）"
    assert want in answer, answer


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("ask", "confirm"), [("兑换 1", "确认"), ("REDEEM 1", "CONFIRM"),
                                              ("兑换1", "YES")])  # fmt: skip
async def test_redeem_and_confirm_once(client, mode, ask, confirm):
    asked = await say(client, mode, ask)
    assert ("Redeem 3,000 points" if english(ask) else "确认用 3,000 分兑换") in asked, asked
    done = await say(client, mode, confirm)
    assert ("Done!" if english(confirm) else "兑换成功") in done, done
    view = await member(client)
    assert view["points"] == 500
    assert len(view["vouchers"]) == 1
    assert view["vouchers"][0]["code"] in done
    # the vouchers keyword now lists it, on every channel
    for word in ("券", "我的券", "VOUCHERS"):
        assert view["vouchers"][0]["code"] in await say(client, mode, word)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("word", ["券", "我的券", "VOUCHERS"])
async def test_no_vouchers_yet(client, mode, word):
    want = "You have no vouchers yet" if english(word) else "还没有可用的券"
    assert want in await say(client, mode, word)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("word", ["领卡", "LK", "PICKUP"])
async def test_card_pickup_status(client, mode, word):
    answer = await say(client, mode, word)
    if english(word):
        assert "Gold card" in answer and "let you know" in answer, answer
        return
    assert "金卡" in answer and "审批通过后" in answer, answer


@pytest.mark.parametrize("mode", MODES)
async def test_card_pickup_day_and_mail(client, mode):
    apps = await (await client.get("/api/card-applications", headers=AUTH)).json()
    app_id = apps[0]["id"]
    for step in ("entered", "sent_to_head_office", "approved"):
        resp = await client.post(
            f"/api/card-applications/{app_id}/status", json={"status": step}, headers=AUTH
        )
        assert resp.status == 200, await resp.text()
    assert "已经准备好" in await say(client, mode, "领卡")
    ask = await say(client, mode, "寄卡")
    assert "上海市静安" in ask and "南京西路1000号" not in ask, ask  # masked address
    await say(client, mode, "确认")
    apps = await (await client.get("/api/card-applications", headers=AUTH)).json()
    assert apps[0]["status"] == "mailed"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("word", ["帮助", "HELP", "INFO", "?", "？"])
async def test_help(client, mode, word):
    assert ("You can reply" if english(word) else "您可以回复") in await say(client, mode, word)


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_text_gets_a_friendly_answer(client, mode):
    answer = await say(client, mode, "啊啊啊")
    assert answer.strip()
    assert "积分" in answer  # points the way to what the bot can do


STOP_WORDS = ["不接受", "退订", "TD", "T", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END",
              "QUIT", "REVOKE", "OPTOUT"]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("word", STOP_WORDS)
async def test_stop_words(client, mode, word):
    done = "You are unsubscribed" if english(word) else "已为您退订"
    assert done in await say(client, mode, word)
    view = await member(client)
    assert view["stopped"] is True
    assert [c["action"] for c in view["consent"]] == ["stop"]
    assert view["consent"][0]["channel"] == mode.split("-")[0]
    # confirmed once; a stopped member still gets answers to their own questions
    assert done not in await say(client, mode, word)
    assert "当前积分" in await say(client, mode, "积分")
    assert len((await member(client))["consent"]) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("word", ["接受", "订阅", "START", "UNSTOP"])
async def test_resume_words(client, mode, word):
    await say(client, mode, "TD")
    assert ("Welcome back" if english(word) else "恢复接收") in await say(client, mode, word)
    view = await member(client)
    assert view["stopped"] is False
    assert [c["action"] for c in view["consent"]] == ["stop", "resume"]


@pytest.mark.parametrize("mode", ["wechat-plain", "wechat-aes"])
@pytest.mark.parametrize("word", ["绑定", "BIND"])
async def test_bind_a_new_wechat_user(client, mode, word):
    stranger = "o_new_follower"
    unbound = await say(client, mode, "积分", sender=stranger)
    assert "绑定" in unbound and "3,500" not in unbound  # never another member's data
    sent = await say(client, mode, f"{word} 13800138000", sender=stranger)
    assert ("code is on its way" if word == "BIND" else "验证码") in sent, sent
    assert "138****8000" in sent
    code = client.app[SMS_SENDER].sent[-1]
    digits = "".join(ch for ch in code.body if ch.isdigit())
    six = next(digits[i : i + 6] for i in range(len(digits) - 5) if digits[i : i + 6] in code.body)
    assert code.to == PHONE
    await say(client, mode, six, sender=stranger)
    assert "当前积分：3,500" in await say(client, mode, "积分", sender=stranger)


async def test_bind_on_sms_explains_the_phone_is_the_membership(client):
    assert "绑定是给微信用的" in await say(client, "sms", "绑定 13800138000")
    assert "Linking is for WeChat" in await say(client, "sms", "BIND 13800138000")


async def test_an_sms_from_a_stranger_gets_no_member_data(client):
    answer = await say(client, "sms", "积分", sender="+8613900139000")
    assert "3,500" not in answer and "张三" not in answer


@pytest.mark.parametrize("mode", MODES)
async def test_concurrent_confirmations_redeem_once(client, mode):
    await say(client, mode, "兑换 1")
    answers = await asyncio.gather(*(say(client, mode, "确认") for _ in range(5)))
    assert all("兑换成功" in a for a in answers), answers
    view = await member(client)
    assert view["points"] == 500
    assert len(view["vouchers"]) == 1


async def test_concurrent_redemptions_never_overdraw(client):
    """The member confirms on SMS and WeChat at once; the balance covers one voucher."""
    modes = ("wechat-aes", "sms")  # with an AES key, safe mode is the only WeChat mode
    for mode in modes:
        await say(client, mode, "兑换 1")
    confirms = await asyncio.gather(*(say(client, m, "确认") for m in modes))
    view = await member(client)
    assert view["points"] == 500 and len(view["vouchers"]) == 1
    code = view["vouchers"][0]["code"]
    # One of the two shows the voucher, the other is told the balance is short.
    assert all(code in a for a in confirms if "兑换成功" in a), confirms
    assert any("还差" in a for a in confirms), confirms


async def test_a_stores_own_keywords_work_on_the_webhooks(aiohttp_client, make_settings):
    settings = make_settings(
        server={"public_url": PUBLIC_URL},
        sms={"provider": "console", "twilio": {"auth_token": TWILIO_AUTH_TOKEN}},
        keywords={"points": ["查分"]},
    )
    client = await aiohttp_client(create_app(settings))
    await client.post("/api/stores", json={"code": "S001", "name": "店", "city": "上海"},
                      headers=AUTH)  # fmt: skip
    await client.post("/api/members", json={"phone": PHONE, "name": "张三", "store": "S001"},
                      headers=AUTH)  # fmt: skip
    assert "当前积分" in await say(client, "sms", "查分")
    assert "当前积分" in await say(client, "sms", "积分")
