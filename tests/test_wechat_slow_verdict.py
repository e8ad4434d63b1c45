"""A plain-mode request whose replay verdict (`bot.channels.wechat_replay`) the database
cannot give before the reply deadline: `success` at the deadline, then the message is
handled behind it — only if its body is the signed URL's first — and the answer goes by
the customer-service API."""

from __future__ import annotations

import asyncio

from bot.appkeys import INBOUND_LOG
from bot.channels.wechat import WeChatOptions
from tests import test_wechat
from tests.payloads import plain, wechat_text
from tests.test_wechat import OPENID
from tests.test_wechat_deadline import database_held

# the webhook tests' fixtures
conversation, fake_api, make_client = (
    test_wechat.conversation,
    test_wechat.fake_api,
    test_wechat.make_client,
)


async def test_a_slow_verdict_answers_success_then_handles_the_first_body_only(
    make_client, conversation, fake_api, db_url
):
    client = await make_client(options=WeChatOptions(reply_deadline=0.5, cs_backoff=0.01))
    query, body = plain(wechat_text(OPENID, "积分", msg_id="9601"))
    forged = wechat_text("o_someone_else", "兑换 1", msg_id="9602").encode()
    # SQLite: the whole file; PostgreSQL: the replay memory's table
    async with database_held(db_url, "wechat_signed_urls"):
        first = await asyncio.wait_for(client.post("/wechat", params=query, data=body), 10)
        assert await first.text() == "success"  # by the deadline, the lock still held
        second = await asyncio.wait_for(client.post("/wechat", params=query, data=forged), 10)
        assert await second.text() == "success"
        assert conversation.calls == []  # nothing handled before the verdict
    await fake_api.wait_sent(1)
    await client.app[INBOUND_LOG].drain(within=5)
    # the URL's first body was handled, once, and answered by the API; the forged one not
    assert [c.sender for c in conversation.calls] == [OPENID]
    assert [(s["touser"], s["text"]["content"]) for s in fake_api.sent] == [
        (OPENID, "echo:积分")
    ]
