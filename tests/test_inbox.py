"""The hand-off round trip, end to end through the real webhooks and the real app:
member → conversation → `GET /api/inbox` → `POST /api/inbox/{id}/reply` → the fake
WeChat customer-service API (window open) or the fake Twilio API (window closed, its
allowance used up, or an SMS sender); scopes (403 / 404), closing, the manager's view,
hostile input. Runs on SQLite and PostgreSQL like the rest of the suite."""

from __future__ import annotations

from datetime import timedelta
from xml.sax.saxutils import unescape
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from bot.app import create_app
from bot.router import Intent, route
from models.db import transaction
from models.tables.members import Identity
from models.types import utcnow
from tests.conftest import API_KEY
from tests.fakes import (
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeTwilioApi,
    FakeWeChatApi,
)
from tests.payloads import (
    TWILIO_NUMBER,
    plain,
    reply_fields,
    sms,
    twilio_signature,
    wechat_settings,
    wechat_text,
)

PUBLIC_URL = "http://bot.example.com"  # http: the console cookie is not Secure in tests
PHONE = "+8613800138000"
OPENID = "o_member_inbox"
STRANGER = "+8613900139000"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUESTION = "这件大衣有没有L码"


class Shop:
    def __init__(self, client, wechat: FakeWeChatApi, twilio: FakeTwilioApi, sessions):
        self.client, self.wechat, self.twilio, self.sessions = client, wechat, twilio, sessions
        self.tokens: dict[str, str] = {}

    async def op(self, path: str, body: dict) -> dict:
        resp = await self.client.post(path, json=body, headers=AUTH)
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()

    async def say(self, text: str, *, openid: str = OPENID) -> str:
        query, data = plain(wechat_text(openid, text))
        resp = await self.client.post("/wechat", params=query, data=data)
        assert resp.status == 200, await resp.text()
        return reply_fields(await resp.text())["Content"]

    async def text(self, sender: str, text: str) -> str:
        form = sms(sender, text)
        headers = {"X-Twilio-Signature": twilio_signature(f"{PUBLIC_URL}/sms/twilio", form)}
        resp = await self.client.post("/sms/twilio", data=form, headers=headers)
        body = await resp.text()
        assert resp.status == 200, body
        start, end = body.find("<Message>"), body.find("</Message>")
        return unescape(body[start + len("<Message>") : end]) if start >= 0 else ""

    def auth(self, who: str | None) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    async def inbox(self, who: str, status: str | None = None, expect: int = 200):
        params = {"status": status} if status else None
        resp = await self.client.get("/api/inbox", params=params, headers=self.auth(who))
        assert resp.status == expect, await resp.text()
        return (await resp.json()).get("conversations")

    async def reply(self, who: str | None, conversation_id, text="有的，给您留一件", expect=202):
        resp = await self.client.post(
            f"/api/inbox/{conversation_id}/reply", json={"text": text}, headers=self.auth(who)
        )
        assert resp.status == expect, await resp.text()
        return await resp.json()

    async def close(self, who: str | None, conversation_id, expect: int = 200) -> dict:
        resp = await self.client.post(f"/api/inbox/{conversation_id}/close", headers=self.auth(who))
        assert resp.status == expect, await resp.text()
        return await resp.json()

    async def age_window(self, hours: float) -> None:
        """Make the member's last WeChat message `hours` old."""
        async with transaction(self.sessions) as session:
            await session.exec(
                update(Identity)
                .where(Identity.channel == "wechat")
                .values(last_inbound_at=utcnow() - timedelta(hours=hours))
            )


async def _fake(aiohttp_server, fake):
    server = await aiohttp_server(fake.app())
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def shop(request, aiohttp_client, aiohttp_server, make_settings, sessions):
    wechat, twilio = FakeWeChatApi(), FakeTwilioApi()
    settings = make_settings(
        server={"public_url": PUBLIC_URL},
        wechat=wechat_settings(aes_key="", api_base_url=await _fake(aiohttp_server, wechat)),
        sms={
            "provider": "twilio",
            "twilio": {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN,
                       "from_number": TWILIO_NUMBER,
                       "api_base_url": await _fake(aiohttp_server, twilio)},
        },
        keywords={"handoff": [QUESTION]},
        stores={"hours": getattr(request, "param", "00:00-24:00")},
    )  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    s = Shop(client, wechat, twilio, sessions)
    await s.op("/api/stores", {"code": "S001", "name": "南京西路店", "city": "上海"})
    await s.op("/api/stores", {"code": "S002", "name": "淮海路店", "city": "上海"})
    for code, name, store, role in (
        ("A001", "王丽", "S001", "assistant"),
        ("A002", "李娜", "S001", "assistant"),
        ("M001", "陈静", "S001", "manager"),
        ("M002", "周敏", "S002", "manager"),
    ):
        made = await s.op("/api/assistants", {"code": code, "name": name, "store": store})
        s.tokens[code] = made["token"]
        if role == "manager":
            await s.op("/api/assistants", {"code": code, "name": name, "store": store,
                                           "role": "manager"})  # fmt: skip
    await s.op(
        "/api/members",
        {"phone": PHONE, "name": "张三", "store": "S001", "assistant": "A001",
         "wechat_openid": OPENID},
    )  # fmt: skip
    return s


async def test_wechat_round_trip_to_the_customer_service_api(shop):
    told = await shop.say(QUESTION)
    assert "王丽" in told and "转" in told, told
    [c] = await shop.inbox("A001")
    assert (c["member"], c["name"], c["channel"], c["status"]) == (PHONE, "张三", "wechat", "open")
    assert [(m["from"], m["text"]) for m in c["messages"]][0] == ("member", QUESTION)
    assert c["messages"][1]["from"] == "bot" and c["messages"][1]["text"] == told
    # later messages join; keywords keep their answers
    joined = await shop.say("还有M码吗")
    assert "王丽" in joined and "没看懂" not in joined
    assert "积分" in await shop.say("积分")
    [c] = await shop.inbox("A001")
    assert [m["text"] for m in c["messages"] if m["from"] == "member"] == [QUESTION, "还有M码吗"]

    answer = await shop.reply("A001", c["id"], "有的，给您留一件M码")
    assert answer == {"status": "sent", "channel": "wechat", "via": "customer_service"}
    await shop.wechat.wait_sent(1)
    [sent] = shop.wechat.sent
    assert sent["touser"] == OPENID and sent["text"]["content"] == "有的，给您留一件M码"
    assert shop.twilio.messages == []
    [c] = await shop.inbox("A001", "answered")
    last = c["messages"][-1]
    assert (last["from"], last["channel"], last["status"]) == ("assistant", "wechat", "sent")
    assert await shop.inbox("A001", "open") == []
    # the member writes again: open again
    await shop.say("好的，周六去拿")
    assert [c["id"] for c in await shop.inbox("A001", "open")] == [c["id"]]


async def test_closed_window_goes_by_sms_even_to_a_stopped_member(shop):
    await shop.say("人工")
    await shop.say("TD")
    resp = await shop.client.get(f"/api/members/{PHONE}", headers=AUTH)
    assert (await resp.json())["stopped"] is True
    await shop.age_window(49)
    [c] = await shop.inbox("A001")
    answer = await shop.reply("A001", c["id"], "您好，L码明天到店")
    assert answer["channel"] == "sms" and answer["status"] == "sent"
    await shop.twilio.wait_messages(1)
    [msg] = shop.twilio.messages
    assert (msg["To"], msg["Body"]) == (PHONE, "您好，L码明天到店")
    assert shop.wechat.sent == []


async def test_the_window_allowance_of_five_then_sms(shop):
    await shop.say("人工")
    [c] = await shop.inbox("A001")
    channels = [(await shop.reply("A001", c["id"], f"第{i}条"))["channel"] for i in range(6)]
    assert channels == ["wechat"] * 5 + ["sms"]


async def test_wechat_refusing_the_window_falls_back_to_sms(shop):
    await shop.say("人工")
    [c] = await shop.inbox("A001")
    shop.wechat.failures.append(("errcode", 45015))
    answer = await shop.reply("A001", c["id"])
    assert (answer["channel"], answer["status"]) == ("sms", "sent")


async def test_scopes_another_assistant_unknown_and_the_manager(shop):
    await shop.say(QUESTION)
    [c] = await shop.inbox("A001")
    assert await shop.inbox("A002") == []
    assert (await shop.reply("A002", c["id"], expect=403))["field"] == "id"
    await shop.close("A002", c["id"], expect=403)
    assert (await shop.reply("A001", 999_999, expect=404))["field"] == "id"
    await shop.reply("A001", "abc", expect=404)
    await shop.close("A001", "99999999999999", expect=404)
    # the store's manager sees and may answer it; another store's manager does not
    assert [x["id"] for x in await shop.inbox("M001")] == [c["id"]]
    assert await shop.inbox("M002") == []
    await shop.reply("M002", c["id"], expect=403)
    assert (await shop.reply("M001", c["id"]))["status"] == "sent"


async def test_close_then_a_new_conversation(shop):
    await shop.say(QUESTION)
    [c] = await shop.inbox("A001")
    assert await shop.close("A001", c["id"]) == {"id": c["id"], "status": "closed"}
    assert await shop.close("A001", c["id"]) == {"id": c["id"], "status": "closed"}
    assert (await shop.reply("A001", c["id"], expect=409))["error"]
    assert [x["id"] for x in await shop.inbox("A001", "closed")] == [c["id"]]
    # an unknown text no longer joins anything: the usual help
    assert "没看懂" in await shop.say("啊嗯哦")
    await shop.say("人工")
    opened = await shop.inbox("A001", "open")
    assert len(opened) == 1 and opened[0]["id"] != c["id"]


async def test_an_unknown_sms_sender_goes_to_the_managers(shop):
    told = await shop.text(STRANGER, "人工")
    assert "陈静" not in told and told  # no store known: "our store team"
    assert await shop.inbox("A001") == []
    for manager in ("M001", "M002"):
        [c] = await shop.inbox(manager)
        assert (c["member"], c["name"], c["channel"]) == (STRANGER, None, "sms")
    answer = await shop.reply("M002", c["id"], "您好，请问需要什么帮助？")
    assert (answer["channel"], answer["status"]) == ("sms", "sent")
    await shop.twilio.wait_messages(1)
    assert shop.twilio.messages[0]["To"] == STRANGER


async def test_an_unbound_wechat_user_after_the_window_has_no_channel(shop):
    await shop.say("人工", openid="o_stranger")
    await shop.age_window(49)
    [c] = await shop.inbox("M001")
    assert c["member"] is None and c["channel"] == "wechat"
    assert (await shop.reply("M001", c["id"], expect=409))["field"] == "channel"
    assert shop.wechat.sent == [] and shop.twilio.messages == []


async def test_an_unowned_member_goes_to_the_store_manager(shop):
    await shop.op("/api/members", {"phone": STRANGER, "name": "李四", "store": "S001"})
    told = await shop.text(STRANGER, "人工")
    assert "陈静" in told, told
    assert await shop.inbox("A001") == [] and await shop.inbox("M002") == []
    [c] = await shop.inbox("M001")
    assert c["name"] == "李四"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/api/inbox?status=bogus", None, 422),
        ("post", "/api/inbox/{id}/reply", {"text": ""}, 422),
        ("post", "/api/inbox/{id}/reply", {"text": "   "}, 422),
        ("post", "/api/inbox/{id}/reply", {"text": "x" * 2001}, 422),
        ("post", "/api/inbox/{id}/reply", {"text": 5}, 422),
        ("post", "/api/inbox/{id}/reply", {"text": "hi", "to": "+1"}, 422),
        ("post", "/api/inbox/{id}/reply", [1, 2], 400),
        ("post", "/api/inbox/{id}/reply", "not json", 400),
    ],
)
async def test_hostile_input(shop, method, path, body, status):
    await shop.say("人工")
    [c] = await shop.inbox("A001")
    kwargs = {"headers": shop.auth("A001")}
    if isinstance(body, str):
        kwargs["data"] = body
    elif body is not None:
        kwargs["json"] = body
    resp = await getattr(shop.client, method)(path.format(id=c["id"]), **kwargs)
    assert resp.status == status, await resp.text()
    assert "error" in await resp.json()
    assert shop.wechat.sent == [] and shop.twilio.messages == []


@pytest.mark.parametrize("token", [None, "nope", "x" * 5000])
async def test_no_token_no_inbox(shop, token):
    await shop.say("人工")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for method, path in (("get", "/api/inbox"), ("post", "/api/inbox/1/reply"),
                         ("post", "/api/inbox/1/close")):  # fmt: skip
        resp = await getattr(shop.client, method)(path, json={"text": "hi"}, headers=headers)
        assert resp.status == 401, await resp.text()
    assert shop.wechat.sent == [] and shop.twilio.messages == []


def _closed_now() -> str:
    """Store hours that start 2 hours from now (brand time) and last one hour."""
    local = utcnow().astimezone(ZoneInfo("Asia/Shanghai"))
    return "-".join((local + timedelta(hours=h)).strftime("%H:%M") for h in (2, 3))


CLOSED_NOW = _closed_now()


@pytest.mark.parametrize("shop", [CLOSED_NOW], indirect=True)
async def test_the_member_is_told_when_the_store_opens(shop):
    opens = CLOSED_NOW.split("-")[0]
    told = await shop.say(QUESTION)
    assert f"{opens} 以后" in told, told
    assert opens in await shop.say("还有吗")


async def test_open_hours_say_until_when(shop):
    told = await shop.say(QUESTION)
    assert "24:00 前" in told, told


async def test_english_member_english_answer(shop):
    await shop.op("/api/members", {"phone": PHONE, "locale": "en"})
    told = await shop.say("AGENT")
    assert "passed it to 王丽" in told, told


@pytest.mark.parametrize("word", ["人工", "转人工", "ＡＧＥＮＴ", "agent", "人工客服！"])
def test_the_handoff_words(word):
    assert route(word).intent is Intent.HANDOFF


@pytest.mark.parametrize("word", ["人工智能是什么", "agents", "T恤多少钱"])
def test_lookalikes_are_no_handoff(word):
    assert route(word).intent is not Intent.HANDOFF
