"""The WeChat webhook end to end: `create_app(settings)` with a fake conversation, payloads
signed and encrypted by wechatpy, the customer-service API played by a local fake."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import INBOUND_LOG
from bot.channels.wechat import WECHAT_OPTIONS, WeChatOptions
from bot.conversation import Inbound, Reply
from bot.wechat_api import WeChatApi
from models.tables.inbound import InboundMessage
from tests.fakes import WECHAT_APP_ID, WECHAT_APP_SECRET, FakeWeChatApi
from tests.payloads import (
    CREATE_TIME,
    WECHAT_ACCOUNT,
    WECHAT_AES_KEY,
    aes,
    compatible,
    decrypt_reply,
    plain,
    reply_fields,
    signed_query,
    wechat_event,
    wechat_media,
    wechat_settings,
    wechat_text,
)

OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


class FakeConversation:
    """Echoes the text (or the event); counts calls; `gate` holds every answer back."""

    def __init__(self, *, fail: bool = False):
        self.calls: list[Inbound] = []
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.fail = fail

    async def handle(self, inbound: Inbound) -> Reply:
        self.calls.append(inbound)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("the conversation broke")
        if inbound.event == "unsubscribe":
            return Reply(None)
        return Reply(f"echo:{inbound.event or inbound.text}")


async def until(condition, within: float = 5.0) -> None:
    """Wait for a condition the code under test makes true (never a fixed pause)."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - the condition is the app's state, not an event
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), within)


@pytest.fixture
async def fake_api(aiohttp_server):
    fake = FakeWeChatApi()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def conversation():
    return FakeConversation()


@pytest.fixture
def make_client(make_settings, aiohttp_client, fake_api, conversation):
    async def build(
        *, aes_key: str = "", options: WeChatOptions | None = None, conv=None, **wechat
    ):
        settings = make_settings(
            wechat=wechat_settings(aes_key=aes_key, api_base_url=fake_api.base_url, **wechat)
        )
        app = create_app(settings, conversation=conv or conversation)
        app[WECHAT_OPTIONS] = options or WeChatOptions(cs_backoff=0.01)
        return await aiohttp_client(app)

    return build


async def post(client, query_body):
    query, body = query_body
    return await client.post("/wechat", params=query, data=body)


def without_time(reply_xml: str) -> dict[str, str]:
    """A passive reply's fields but its CreateTime (each answer is stamped when sent)."""
    fields = reply_fields(reply_xml)
    del fields["CreateTime"]
    return fields


async def stored(client, key_prefix: str = "") -> list[InboundMessage]:
    engine = client.app[INBOUND_LOG]._engine
    async with engine.connect() as conn:
        rows = (await conn.execute(select(InboundMessage.__table__))).all()
    return [r for r in rows if r.dedupe_key.startswith(key_prefix)]


# --------------------------------------------------------------------------- URL check


async def test_url_verification_echoes_echostr(make_client):
    client = await make_client()
    resp = await client.get("/wechat", params={**signed_query(), "echostr": "4938274612"})
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.text() == "4938274612"


@pytest.mark.parametrize("tamper", ["signature", "timestamp", "missing"])
async def test_url_verification_with_a_bad_signature_is_403(make_client, tamper):
    client = await make_client()
    query = {**signed_query(), "echostr": "4938274612"}
    if tamper == "missing":
        del query["signature"]
    elif tamper == "signature":
        query["signature"] = "0" * 40
    else:
        query["timestamp"] = str(int(query["timestamp"]) + 1)
    resp = await client.get("/wechat", params=query)
    assert resp.status == 403
    assert "4938274612" not in await resp.text()


async def test_an_empty_token_signs_nothing(make_client):
    client = await make_client(token="")
    resp = await client.get("/wechat", params={**signed_query(""), "echostr": "x"})
    assert resp.status == 403


# --------------------------------------------------------------------------- round trips


async def test_plain_text_round_trip(make_client, conversation):
    client = await make_client()
    resp = await post(client, plain(wechat_text(OPENID, "积分", msg_id="1001")))
    assert resp.status == 200
    reply = reply_fields(await resp.text())
    assert reply["MsgType"] == "text"
    assert reply["ToUserName"] == OPENID
    assert reply["FromUserName"] == WECHAT_ACCOUNT
    assert reply["Content"] == "echo:积分"
    assert conversation.calls == [
        Inbound(
            channel="wechat",
            sender=OPENID,
            text="积分",
            at=datetime.fromtimestamp(CREATE_TIME, UTC),
            message_id="1001",
        )
    ]


async def test_aes_text_round_trip_is_answered_encrypted(make_client, conversation):
    client = await make_client(aes_key=WECHAT_AES_KEY)
    resp = await post(client, aes(wechat_text(OPENID, "POINTS")))
    assert resp.status == 200
    envelope = await resp.text()
    assert "echo:POINTS" not in envelope
    reply = reply_fields(decrypt_reply(envelope))
    assert reply["Content"] == "echo:POINTS"
    assert reply["ToUserName"] == OPENID
    assert conversation.calls[0].text == "POINTS"


async def test_compatible_mode_is_answered_from_the_encrypted_message(make_client, conversation):
    """兼容模式 sends the message in plain beside <Encrypt>, with both signatures on the URL:
    only the encrypted (signed) copy counts, and the answer is encrypted."""
    client = await make_client(aes_key=WECHAT_AES_KEY)
    query, body = compatible(wechat_text(OPENID, "帮助"), plain_copy=wechat_text("o_x", "TD"))
    assert "signature" in query and b"o_x" in body
    resp = await post(client, (query, body))
    assert resp.status == 200
    assert reply_fields(decrypt_reply(await resp.text()))["Content"] == "echo:帮助"
    assert [(c.sender, c.text) for c in conversation.calls] == [(OPENID, "帮助")]


async def test_with_an_aes_key_a_plain_request_is_403(make_client, conversation):
    """Safe mode is the only mode: a plain signature does not cover the body."""
    client = await make_client(aes_key=WECHAT_AES_KEY)
    resp = await post(client, plain(wechat_text(OPENID, "帮助")))
    assert resp.status == 403
    assert conversation.calls == []


async def test_reply_text_that_looks_like_xml_survives(make_client):
    class Tricky(FakeConversation):
        async def handle(self, inbound):
            return Reply("a]]>b <c> & d\x01")

    client = await make_client(conv=Tricky())
    resp = await post(client, plain(wechat_text(OPENID, "x")))
    assert reply_fields(await resp.text())["Content"] == "a]]>b <c> & d"


async def test_an_empty_answer_is_success(make_client, conversation):
    client = await make_client()
    resp = await post(client, plain(wechat_event(OPENID, "unsubscribe")))
    assert resp.status == 200
    assert await resp.text() == "success"


# --------------------------------------------------------------------------- refusals


async def test_bad_signature_is_403_and_not_handled(make_client, conversation):
    client = await make_client()
    query, body = plain(wechat_text(OPENID, "积分"))
    query["signature"] = "f" * 40
    resp = await client.post("/wechat", params=query, data=body)
    assert resp.status == 403
    assert conversation.calls == []


async def test_bad_msg_signature_is_403(make_client, conversation):
    client = await make_client(aes_key=WECHAT_AES_KEY)
    query, body = aes(wechat_text(OPENID, "积分"))
    query["msg_signature"] = "0" * 40
    resp = await client.post("/wechat", params=query, data=body)
    assert resp.status == 403
    assert conversation.calls == []


async def test_a_body_swapped_under_a_valid_msg_signature_is_403(make_client, conversation):
    client = await make_client(aes_key=WECHAT_AES_KEY)
    query, _ = aes(wechat_text(OPENID, "积分"))
    _, other_body = aes(wechat_text("o_attacker", "积分"))
    resp = await client.post("/wechat", params=query, data=other_body)
    assert resp.status == 403
    assert conversation.calls == []


async def test_a_safe_mode_request_without_a_key_configured_is_403(make_client):
    client = await make_client()
    resp = await post(client, aes(wechat_text(OPENID, "积分")))
    assert resp.status == 403


@pytest.mark.parametrize(
    "body",
    [
        "not xml at all",
        "<xml><MsgType>text</MsgType>",
        "<root><MsgType>text</MsgType></root>",
        "<xml><ToUserName>gh</ToUserName><MsgType>text</MsgType><CreateTime>1</CreateTime></xml>",
        f"<xml><FromUserName>{OPENID}</FromUserName><MsgType><a>1</a></MsgType>"
        "<CreateTime>1</CreateTime></xml>",
        f"<xml><FromUserName>{OPENID}</FromUserName><MsgType>text</MsgType>"
        "<CreateTime>soon</CreateTime></xml>",
        f"<xml><FromUserName>{OPENID}</FromUserName><MsgType>text</MsgType>"
        "<CreateTime>99999999999999999999</CreateTime></xml>",
        f"<xml><FromUserName>{'o' * 65}</FromUserName><MsgType>text</MsgType>"
        "<CreateTime>1</CreateTime></xml>",
        "",
    ],
)
async def test_malformed_xml_is_400(make_client, conversation, body):
    client = await make_client()
    resp = await client.post("/wechat", params=signed_query(), data=body.encode())
    assert resp.status == 400
    assert conversation.calls == []


async def test_a_body_over_64_kib_is_413(make_client, conversation):
    client = await make_client()
    query, _ = plain(wechat_text(OPENID, "x"))
    big = wechat_text(OPENID, "积" * 22_000).encode()  # 3 bytes each: > 64 KiB
    assert len(big) > 64 * 1024
    resp = await client.post("/wechat", params=query, data=big)
    assert resp.status == 413
    assert conversation.calls == []


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE xml [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xml><ToUserName>gh_0123456789ab</ToUserName><FromUserName>o_bomb</FromUserName>
<CreateTime>1790000000</CreateTime><MsgType>text</MsgType><Content>&lol9;</Content>
<MsgId>77</MsgId></xml>"""

XXE = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE xml [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<xml><ToUserName>gh_0123456789ab</ToUserName><FromUserName>o_xxe</FromUserName>
<CreateTime>1790000000</CreateTime><MsgType>text</MsgType><Content>&xxe;</Content>
<MsgId>78</MsgId></xml>"""

# The same attacks hidden from a naive byte search: lower case, UTF-16, a parameter entity.
XXE_VARIANTS = [
    XXE.replace("<!DOCTYPE", "<!doctype"),
    XXE.replace("<!ENTITY", "<! ENTITY"),
    """<!DOCTYPE xml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><xml/>""",
]


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE, *XXE_VARIANTS])
@pytest.mark.parametrize("mode", ["plain", "aes"])
async def test_entity_attacks_are_refused_without_expanding(
    make_client, conversation, payload, mode
):
    client = await make_client(aes_key="" if mode == "plain" else WECHAT_AES_KEY)
    if mode == "plain":
        query_body = (plain(wechat_text(OPENID, "x"))[0], payload.encode())
    else:  # the attack inside a properly encrypted and signed envelope
        query_body = aes(payload)
    started = time.perf_counter()
    resp = await post(client, query_body)
    elapsed = time.perf_counter() - started
    assert resp.status == 400
    text = await resp.text()
    assert "declarations are not accepted" in text  # refused before any parser ran
    assert "root:" not in text
    assert elapsed < 1.0
    assert conversation.calls == []


async def test_a_utf16_body_cannot_hide_a_doctype(make_client, conversation):
    client = await make_client()
    query, _ = plain(wechat_text(OPENID, "x"))
    resp = await client.post(
        "/wechat", params=query, data=XXE.replace("utf-8", "utf-16").encode("utf-16")
    )
    assert resp.status == 400
    assert conversation.calls == []


# --------------------------------------------------------------------------- events and types


async def test_subscribe_unsubscribe_and_click_reach_the_conversation(make_client, conversation):
    client = await make_client()
    t = CREATE_TIME
    r1 = await post(client, plain(wechat_event(OPENID, "subscribe", create_time=t)))
    r2 = await post(
        client, plain(wechat_event(OPENID, "subscribe", "qrscene_store42", create_time=t + 1))
    )
    r3 = await post(client, plain(wechat_event(OPENID, "CLICK", "POINTS", create_time=t + 2)))
    r4 = await post(client, plain(wechat_event(OPENID, "unsubscribe", create_time=t + 3)))
    assert reply_fields(await r1.text())["Content"] == "echo:subscribe"
    assert reply_fields(await r3.text())["Content"] == "echo:click"
    assert await r4.text() == "success"
    assert r2.status == 200
    at = lambda s: datetime.fromtimestamp(CREATE_TIME + s, UTC)  # noqa: E731
    assert conversation.calls == [
        Inbound(channel="wechat", sender=OPENID, at=at(0), event="subscribe"),
        Inbound(channel="wechat", sender=OPENID, at=at(1), event="subscribe", event_key="store42"),
        Inbound(channel="wechat", sender=OPENID, at=at(2), event="click", event_key="POINTS"),
        Inbound(channel="wechat", sender=OPENID, at=at(3), event="unsubscribe"),
    ]


async def test_two_events_in_one_second_are_two_events(make_client, conversation):
    client = await make_client()
    await post(client, plain(wechat_event(OPENID, "subscribe")))
    await post(client, plain(wechat_event(OPENID, "CLICK", "POINTS")))
    assert [c.event for c in conversation.calls] == ["subscribe", "click"]


async def test_an_image_is_passed_on_as_empty_text(make_client, conversation):
    client = await make_client()
    resp = await post(client, plain(wechat_media(OPENID, "image")))
    assert reply_fields(await resp.text())["Content"] == "echo:"
    assert conversation.calls[0].text == "" and conversation.calls[0].event is None


@pytest.mark.parametrize("event", ["VIEW", "LOCATION", "TEMPLATESENDJOBFINISH"])
async def test_other_events_are_acknowledged_only(make_client, conversation, event):
    client = await make_client()
    resp = await post(client, plain(wechat_event(OPENID, event, "https://example.com")))
    assert await resp.text() == "success"
    assert conversation.calls == []


# --------------------------------------------------------------------------- retries


async def test_a_retried_message_gets_the_same_answer_and_one_effect(make_client, conversation):
    client = await make_client()
    xml = wechat_text(OPENID, "兑换 1", msg_id="5001")
    first = await post(client, plain(xml))
    retry = await post(client, plain(xml))  # WeChat signs each try anew
    assert without_time(await first.text()) == without_time(await retry.text())
    assert reply_fields(await retry.text())["Content"] == "echo:兑换 1"
    assert len(conversation.calls) == 1


async def test_a_retried_event_has_one_effect(make_client, conversation):
    client = await make_client()
    xml = wechat_event(OPENID, "subscribe")
    await post(client, plain(xml))
    await post(client, plain(xml))
    assert len(conversation.calls) == 1


async def test_a_retried_aes_message_is_answered_encrypted_again(make_client, conversation):
    client = await make_client(aes_key=WECHAT_AES_KEY)
    xml = wechat_text(OPENID, "积分")
    await post(client, aes(xml))
    retry = await post(client, aes(xml))
    assert reply_fields(decrypt_reply(await retry.text()))["Content"] == "echo:积分"
    assert len(conversation.calls) == 1


async def test_concurrent_copies_share_one_answer(make_client, conversation):
    client = await make_client()
    conversation.gate = asyncio.Event()
    xml = wechat_text(OPENID, "积分", msg_id="6001")
    requests = asyncio.gather(*(post(client, plain(xml)) for _ in range(3)))
    await conversation.started.wait()
    await until(lambda: client.app[INBOUND_LOG].waiting == 2)
    conversation.gate.set()
    responses = await requests
    replies = [without_time(await r.text()) for r in responses]
    assert replies[0] == replies[1] == replies[2]
    assert replies[0]["Content"] == "echo:积分"
    assert len(conversation.calls) == 1


async def test_a_copy_at_another_replica_waits_for_the_stored_answer(make_client):
    """Two apps on one database stand for two processes: the second polls the row."""
    first_conv, second_conv = FakeConversation(), FakeConversation()
    first = await make_client(conv=first_conv)
    second = await make_client(conv=second_conv)
    first_conv.gate = asyncio.Event()
    xml = wechat_text(OPENID, "积分", msg_id="6002")
    original = asyncio.ensure_future(post(first, plain(xml)))
    await first_conv.started.wait()
    copy = asyncio.ensure_future(post(second, plain(xml)))
    await until(lambda: second.app[INBOUND_LOG].waiting == 1)
    first_conv.gate.set()
    a, b = await original, await copy
    assert without_time(await a.text()) == without_time(await b.text())
    assert reply_fields(await b.text())["Content"] == "echo:积分"
    assert len(first_conv.calls) == 1 and second_conv.calls == []


async def test_a_failed_handler_is_500_and_the_next_retry_starts_afresh(make_client):
    conv = FakeConversation(fail=True)
    client = await make_client(conv=conv)
    xml = wechat_text(OPENID, "积分")
    assert (await post(client, plain(xml))).status == 500
    conv.fail = False
    resp = await post(client, plain(xml))
    assert reply_fields(await resp.text())["Content"] == "echo:积分"
    assert len(conv.calls) == 2


# --------------------------------------------------------------------------- the deadline


async def test_a_slow_answer_goes_by_the_customer_service_api(make_client, conversation, fake_api):
    client = await make_client(options=WeChatOptions(reply_deadline=0.3))
    conversation.gate = asyncio.Event()
    started = time.perf_counter()
    resp = await post(client, plain(wechat_text(OPENID, "积分", msg_id="7001")))
    assert await resp.text() == "success"
    assert time.perf_counter() - started >= 0.3
    assert fake_api.sent == []
    conversation.gate.set()
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    assert len(fake_api.token_requests) == 1
    assert fake_api.token_requests[0]["appid"] == WECHAT_APP_ID
    [sent] = fake_api.sent
    assert sent["access_token"] in fake_api.valid_tokens
    assert sent["touser"] == OPENID
    assert sent["msgtype"] == "text"
    assert sent["text"] == {"content": "echo:积分"}
    [row] = await stored(client, f"msg:{OPENID}:7001")
    assert (row.status, row.reply_text) == ("sent", "echo:积分")


async def test_retries_during_a_slow_answer_cause_no_second_send(
    make_client, conversation, fake_api
):
    client = await make_client(options=WeChatOptions(reply_deadline=0.3))
    conversation.gate = asyncio.Event()
    xml = wechat_text(OPENID, "兑换 1", msg_id="7002")
    first = asyncio.ensure_future(post(client, plain(xml)))
    await conversation.started.wait()
    early_retry = await post(client, plain(xml))  # arrives while the first still waits
    assert await early_retry.text() == "success"
    assert await (await first).text() == "success"
    late_retry = await post(client, plain(xml))  # arrives after the hand-over to the API
    assert await late_retry.text() == "success"
    conversation.gate.set()
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    after_send = await post(client, plain(xml))
    assert await after_send.text() == "success"
    await client.app[INBOUND_LOG].drain(within=5)
    assert len(conversation.calls) == 1
    assert len(fake_api.sent) == 1


async def test_the_access_token_is_fetched_again_when_wechat_refuses_it(make_client, fake_api):
    fake_api.failures.append(("errcode", 40001))
    slow = FakeConversation()
    slow.gate = asyncio.Event()
    client = await make_client(options=WeChatOptions(reply_deadline=0.05), conv=slow)
    await post(client, plain(wechat_text(OPENID, "积分")))
    slow.gate.set()
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    assert len(fake_api.token_requests) == 2
    assert len(fake_api.refused) == 1
    assert fake_api.sent[0]["access_token"] != fake_api.refused[0]["access_token"]


async def test_a_customer_service_5xx_is_retried(make_client, fake_api):
    slow = FakeConversation()
    slow.gate = asyncio.Event()
    client = await make_client(
        options=WeChatOptions(reply_deadline=0.05, cs_backoff=0.01), conv=slow
    )
    fake_api.failures.extend([502, 503])
    await post(client, plain(wechat_text(OPENID, "积分", msg_id="7003")))
    slow.gate.set()
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    assert len(fake_api.refused) == 2 and len(fake_api.sent) == 1
    assert len(fake_api.token_requests) == 1


async def test_a_final_customer_service_refusal_is_recorded_as_failed(make_client, fake_api):
    slow = FakeConversation()
    slow.gate = asyncio.Event()
    client = await make_client(options=WeChatOptions(reply_deadline=0.05), conv=slow)
    fake_api.failures.append(("errcode", 45015))  # the member's 48-hour window is closed
    await post(client, plain(wechat_text(OPENID, "积分", msg_id="7004")))
    slow.gate.set()
    await until(lambda: len(fake_api.refused) == 1)
    await client.app[INBOUND_LOG].drain(within=5)
    assert fake_api.sent == []
    [row] = await stored(client, f"msg:{OPENID}:7004")
    assert row.status == "failed"


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("mode", ["plain", "aes"])
async def test_timestamps_outside_the_window_are_403(make_client, conversation, mode):
    """`wechat.max_timestamp_age` (default 300 s), either way from our clock."""
    client = await make_client(aes_key=WECHAT_AES_KEY if mode == "aes" else "")
    build = aes if mode == "aes" else plain
    now = int(time.time())
    for n, ts in enumerate(["1409304348", str(now - 301), str(now + 301)]):
        resp = await post(client, build(wechat_text(OPENID, f"old{n}"), timestamp=ts))
        assert resp.status == 403
    fresh = str(now - 10)
    assert (await post(client, build(wechat_text(OPENID, "b"), timestamp=fresh))).status == 200
    assert [c.text for c in conversation.calls] == ["b"]


async def test_the_window_is_configurable(make_client, conversation):
    client = await make_client(max_timestamp_age=30)
    stale = str(int(time.time()) - 40)
    assert (await post(client, plain(wechat_text(OPENID, "a"), timestamp=stale))).status == 403
    assert conversation.calls == []


@pytest.mark.parametrize("timestamp", ["", "abc", "１７９０", "١٧٩٠٠٠٠٠٠٠", "-1", "1e9", "9" * 40])
async def test_a_timestamp_that_is_not_ascii_digits_is_403(make_client, conversation, timestamp):
    client = await make_client()
    resp = await post(client, plain(wechat_text(OPENID, "a"), timestamp=timestamp))
    assert resp.status == 403
    query = {**signed_query(timestamp=timestamp), "echostr": "e"}
    verify = await client.get("/wechat", params=query)
    assert verify.status == 403
    assert conversation.calls == []


async def test_url_verification_refuses_a_stale_timestamp(make_client):
    client = await make_client()
    query = {**signed_query(timestamp=str(int(time.time()) - 301)), "echostr": "4938274612"}
    resp = await client.get("/wechat", params=query)
    assert resp.status == 403
    assert "4938274612" not in await resp.text()


# --------------------------------------------------------------------------- the API client


async def test_the_access_token_is_cached_until_shortly_before_it_expires(fake_api):
    now = [1000.0]
    fake_api.expires_in = 7200
    async with aiohttp.ClientSession() as http:
        api = WeChatApi(
            http,
            base_url=fake_api.base_url,
            app_id=WECHAT_APP_ID,
            app_secret=WECHAT_APP_SECRET,
            clock=lambda: now[0],
        )
        first = await api.access_token()
        await asyncio.gather(*(api.send_text(OPENID, f"m{i}") for i in range(3)))
        now[0] += 7200 - 301
        assert await api.access_token() == first
        now[0] += 2  # inside the last 5 minutes: replaced before it runs out
        second = await api.access_token()
    assert second != first
    assert len(fake_api.token_requests) == 2
    assert sorted(m["text"]["content"] for m in fake_api.sent) == ["m0", "m1", "m2"]
