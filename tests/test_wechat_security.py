"""The WeChat webhook against a caller who has seen signed URLs, end to end with the real
bot: safe mode only with an AES key, the timestamp window, the replay memory of signed
URLs, de-duplication keys per sender, and signatures checked before any XML parser."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
from sqlalchemy import func, select

from bot.app import create_app
from bot.appkeys import ENGINE, INBOUND_LOG
from bot.channels.wechat import WECHAT_REPLAY
from models.tables.conversation import PendingAction
from models.tables.inbound import InboundMessage, WeChatSignedUrl
from models.tables.ledger import Voucher
from tests.conftest import API_KEY
from tests.payloads import (
    WECHAT_AES_KEY,
    WECHAT_TOKEN,
    aes,
    compatible,
    decrypt_reply,
    plain,
    reply_fields,
    signed_query,
    wechat_settings,
    wechat_text,
)

AUTH = {"Authorization": f"Bearer {API_KEY}"}
VICTIM, VICTIM_PHONE = "o_victim", "+8613800138000"
OTHER, OTHER_PHONE = "o_other_member", "+8613900139000"


async def _setup(client) -> None:
    for path, body in (
        ("/api/stores", {"code": "S001", "name": "南京西路店", "city": "上海"}),
        ("/api/members", {"phone": VICTIM_PHONE, "name": "张三", "store": "S001",
                          "wechat_openid": VICTIM}),
        ("/api/members", {"phone": OTHER_PHONE, "name": "李四", "store": "S001",
                          "wechat_openid": OTHER}),
        ("/api/purchases", {"receipt_no": "R1", "phone": VICTIM_PHONE, "store": "S001",
                            "amount": "3500.00", "at": "2026-11-20T15:00:00+08:00"}),
        ("/api/purchases", {"receipt_no": "R2", "phone": OTHER_PHONE, "store": "S001",
                            "amount": "1200.00", "at": "2026-11-20T15:00:00+08:00"}),
    ):  # fmt: skip
        resp = await client.post(path, json=body, headers=AUTH)
        assert resp.status in (200, 201), await resp.text()


@pytest.fixture
def build(aiohttp_client, make_settings):
    async def make(aes_key: str = "", **wechat):
        settings = make_settings(wechat=wechat_settings(aes_key=aes_key, **wechat))
        client = await aiohttp_client(create_app(settings))
        await _setup(client)
        return client

    return make


async def post(client, query_body):
    query, body = query_body
    return await client.post("/wechat", params=query, data=body)


async def count(client, table) -> int:
    async with client.app[ENGINE].connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table.__table__))).scalar()


async def answer(resp, *, mode: str = "plain") -> str:
    body = await resp.text()
    assert resp.status == 200, body
    return reply_fields(decrypt_reply(body) if mode == "aes" else body)["Content"]


def captured_query() -> dict[str, str]:
    """The issue's repro: a signature over a timestamp of 2001 and a fixed nonce."""
    parts = sorted([WECHAT_TOKEN, "1000000000", "captured"])
    signature = hashlib.sha1("".join(parts).encode()).hexdigest()
    return {"signature": signature, "timestamp": "1000000000", "nonce": "captured"}


# --------------------------------------------------------------------------- point 1


@pytest.mark.parametrize("aes_key", ["", WECHAT_AES_KEY])
async def test_a_captured_old_url_acts_for_nobody(build, aes_key):
    client = await build(aes_key=aes_key)
    query = captured_query()
    for text in ("兑换 1", "确认", "积分"):
        resp = await client.post("/wechat", params=query, data=wechat_text(VICTIM, text).encode())
        assert resp.status == 403
        body = await resp.text()
        assert "张三" not in body and "3,500" not in body
    # nothing was read or written on the victim's behalf
    for table in (InboundMessage, WeChatSignedUrl, PendingAction, Voucher):
        assert await count(client, table) == 0, table
    view = await (await client.get(f"/api/members/{VICTIM_PHONE}", headers=AUTH)).json()
    assert view["points"] == 3500 and view["vouchers"] == []


async def test_a_fresh_signed_url_is_used_with_one_body_only(build):
    client = await build()
    query, body = plain(wechat_text(OTHER, "积分"))
    assert "李四" in await answer(await client.post("/wechat", params=query, data=body))
    # the same URL (seen in a log, say) with the victim's message
    for text in ("兑换 1", "积分"):
        forged = wechat_text(VICTIM, text).encode()
        resp = await client.post("/wechat", params=query, data=forged)
        assert resp.status == 403
        assert "张三" not in await resp.text()
    assert await count(client, PendingAction) == 0
    # the same URL with the same body (a resend) gets its answer again
    again = await answer(await client.post("/wechat", params=query, data=body))
    assert "李四" in again and "张三" not in again


async def test_two_bodies_under_one_url_at_once_at_most_one_is_accepted(build):
    client = await build()
    query = signed_query()
    bodies = [wechat_text(VICTIM, "积分").encode(), wechat_text(OTHER, "积分").encode()]
    for _ in range(3):  # a few rounds, each with a URL of its own
        query = signed_query()
        resps = await asyncio.gather(
            *(client.post("/wechat", params=query, data=bodies[n % 2]) for n in range(8))
        )
        accepted = {n % 2 for n, r in enumerate(resps) if r.status == 200}
        assert len(accepted) == 1, [r.status for r in resps]
        assert all(r.status in (200, 403) for r in resps)


async def test_safe_mode_needs_no_memory_its_signature_covers_the_body(build):
    client = await build(aes_key=WECHAT_AES_KEY)
    query, body = aes(wechat_text(OTHER, "积分"))
    assert "李四" in await answer(await client.post("/wechat", params=query, data=body), mode="aes")
    _, forged = aes(wechat_text(VICTIM, "积分"))
    assert (await client.post("/wechat", params=query, data=forged)).status == 403
    assert await count(client, WeChatSignedUrl) == 0


async def test_urls_past_the_window_are_purged(build):
    client = await build(max_timestamp_age=60)
    memory = client.app[WECHAT_REPLAY]
    now = int(time.time())
    async with client.app[ENGINE].begin() as conn:
        await conn.execute(
            WeChatSignedUrl.__table__.insert(),
            [
                {"url_key": "old", "body_hash": "x", "signed_at": now - 61},
                {"url_key": "recent", "body_hash": "x", "signed_at": now - 30},
            ],
        )
    memory._next_purge = 0.0  # due now
    await answer(await post(client, plain(wechat_text(OTHER, "积分"))))
    await client.app[INBOUND_LOG].settle()
    async with client.app[ENGINE].connect() as conn:
        keys = set((await conn.execute(select(WeChatSignedUrl.url_key))).scalars())
    assert "old" not in keys and "recent" in keys and len(keys) == 2


# --------------------------------------------------------------------------- point 9


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b"<xml><Encrypt>abc</Encrypt",
        b"<xml><Encrypt><![CDATA[QUJD]]></Encrypt><Encrypt>QUJD</Encrypt></xml>",
        b"<xml><ToUserName>&bad;</ToUserName><Encrypt>QUJD</Encrypt><x></xml>",
        b'<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Encrypt>QUJD</Encrypt></xml>',
        b"\xff\xfe<\x00x\x00",
        b"",
    ],
)
async def test_a_badly_signed_safe_mode_request_is_403_before_any_parser(build, body):
    client = await build(aes_key=WECHAT_AES_KEY)
    query, _ = aes(wechat_text(VICTIM, "积分"))
    del query["signature"]
    query["msg_signature"] = "0" * 40
    resp = await client.post("/wechat", params=query, data=body)
    assert resp.status == 403
    text = await resp.text()
    assert "well-formed" not in text and "line" not in text and "column" not in text


async def test_a_signed_envelope_is_read_without_parsing_it(build):
    """Only <Encrypt> (covered by msg_signature) is taken from the envelope."""
    client = await build(aes_key=WECHAT_AES_KEY)
    query, body = aes(wechat_text(OTHER, "积分"))
    odd = body.replace(b"<ToUserName>", b"<ToUserName>&unknown;")
    assert "李四" in await answer(await client.post("/wechat", params=query, data=odd), mode="aes")


# --------------------------------------------------------------------------- point 2


@pytest.mark.parametrize("mode", ["plain", "aes"])
async def test_a_reused_msg_id_never_returns_another_members_answer(build, mode):
    client = await build(aes_key=WECHAT_AES_KEY if mode == "aes" else "")
    sign = aes if mode == "aes" else plain
    mine = await answer(
        await post(client, sign(wechat_text(VICTIM, "帮助", msg_id="42"))), mode=mode
    )
    await client.app[INBOUND_LOG].settle()
    # a stranger and another member send messages that carry the same MsgId
    stranger = await answer(
        await post(client, sign(wechat_text("o_stranger", "积分", msg_id="42"))), mode=mode
    )
    assert stranger != mine and "绑定" in stranger and "张三" not in stranger
    other = await answer(
        await post(client, sign(wechat_text(OTHER, "积分", msg_id="42"))), mode=mode
    )
    assert "李四" in other and "张三" not in other


@pytest.mark.parametrize("mode", ["plain", "aes"])
async def test_the_quick_points_path_keys_by_sender_too(build, mode):
    client = await build(aes_key=WECHAT_AES_KEY if mode == "aes" else "")
    sign = aes if mode == "aes" else plain
    victim = await answer(
        await post(client, sign(wechat_text(VICTIM, "积分", msg_id="7"))), mode=mode
    )
    assert "张三" in victim
    await client.app[INBOUND_LOG].settle()  # the quick answer's row is stored
    other = await answer(
        await post(client, sign(wechat_text(OTHER, "积分", msg_id="7"))), mode=mode
    )
    assert "李四" in other and "张三" not in other and "3,500" not in other
    # each sender's retry still gets its own stored answer
    again = await answer(
        await post(client, sign(wechat_text(VICTIM, "积分", msg_id="7"))), mode=mode
    )
    assert again == victim


async def test_two_replicas_accept_one_body_per_url(aiohttp_client, make_settings):
    """Two apps on one database (two replicas), the same URL with two bodies at once."""
    settings = make_settings(wechat=wechat_settings(aes_key=""))
    first = await aiohttp_client(create_app(settings))
    await _setup(first)
    second = await aiohttp_client(create_app(settings, migrate_on_start=False))
    bodies = [wechat_text(VICTIM, "积分").encode(), wechat_text(OTHER, "积分").encode()]
    for _ in range(5):
        query = signed_query()
        resps = await asyncio.gather(
            *(
                c.post("/wechat", params=query, data=b)
                for c, b in zip((first, second), bodies, strict=True)
            )
        )
        assert sorted(r.status for r in resps) == [200, 403], [r.status for r in resps]


async def test_compatible_mode_with_a_text_that_looks_like_an_encrypt_field(build):
    """The plain copy of a compatible-mode envelope may carry anything the member typed."""
    client = await build(aes_key=WECHAT_AES_KEY)
    text = " ".join(["<Encrypt>QUJD</Encrypt>"] * 3)
    query, body = compatible(wechat_text(OTHER, text))
    escaped = text.replace("<", "&lt;").replace(">", "&gt;").encode()
    body = body.replace(escaped, b"<![CDATA[" + text.encode() + b"]]>")  # as WeChat writes it
    assert body.count(b"<Encrypt>") == 4
    assert "李四" in await answer(await post(client, (query, body)), mode="aes")
    assert await count(client, InboundMessage) == 1  # handled, not refused
