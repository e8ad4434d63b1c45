# ruff: noqa: F811  (the e2e fixture `client` is imported from tests/test_e2e_webhooks.py)
"""End to end: members writing sentences, through the real webhooks (issue 12).

Requests are built with wechatpy's and twilio's own code (tests/payloads.py) and go
through `create_app` (the fixture and `say` of tests/test_e2e_webhooks.py). A clear
sentence gets exactly the keyword's answer; stops and resumes in words are honoured
and recorded with the sentence; lookalikes are not stops; small talk gets a short
answer by name; two close meanings are asked with numbered options.
"""

from __future__ import annotations

import pytest

from tests.test_e2e_webhooks import AUTH, client, member, say  # noqa: F401

MODES = ("wechat-aes", "sms")
"""Both channels; WeChat in safe mode (tests/test_e2e_webhooks.py covers plain mode too)."""

SENTENCES = [
    ("积分", ["我还有多少积分", "咋查积分啊", "你好，想查下我的积份，谢谢", "积分是多少呀😊"]),
    ("POINTS", ["how many points do I have?", "Hi, could you check my points please"]),
    ("券", ["我的劵呢", "俺有啥券"]),
    ("VOUCHERS", ["do I have any coupons?"]),
    ("兑换", ["积分能换什么", "我想用积分兑换点东西"]),
    ("REDEEM", ["what rewards can I get?"]),
    ("领卡", ["我的会员卡好了吗", "卡办得怎么样了"]),
    ("PICKUP", ["is my membership card ready?"]),
    ("帮助", ["你能做什么", "这个怎么用"]),
    ("HELP", ["what can you do?"]),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("keyword", "sentences"), SENTENCES)
async def test_a_clear_sentence_gets_exactly_the_keywords_answer(client, mode, keyword, sentences):
    expected = await say(client, mode, keyword)
    for sentence in sentences:
        assert await say(client, mode, sentence) == expected, sentence


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("ask", "confirm", "asked", "done"),
    [("我要换300的券", "确认兑换", "确认用 3,000 分兑换", "兑换成功"),
     ("redeem the 300 yuan voucher please", "yes please go ahead", "Redeem 3,000 points", "Done!")],
)  # fmt: skip
async def test_redeem_by_value_in_a_sentence(client, mode, ask, confirm, asked, done):
    assert asked in await say(client, mode, ask)
    assert done in await say(client, mode, confirm)
    view = await member(client)
    assert view["points"] == 500 and len(view["vouchers"]) == 1


async def _card_ready(client) -> int:
    apps = await (await client.get("/api/card-applications", headers=AUTH)).json()
    for step in ("entered", "sent_to_head_office", "approved"):
        resp = await client.post(
            f"/api/card-applications/{apps[0]['id']}/status", json={"status": step}, headers=AUTH
        )
        assert resp.status == 200, await resp.text()
    return apps[0]["id"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("sentence", "keyword"),
    [("明天下午去店里拿卡", "领卡 明天"), ("我周六下午过去领卡", "领卡 周六"),
     ("I'll pick up my card tomorrow afternoon", "PICKUP tomorrow")],
)  # fmt: skip
async def test_pickup_day_in_words(client, mode, sentence, keyword):
    await _card_ready(client)
    answer = await say(client, mode, sentence)
    apps = await (await client.get("/api/card-applications", headers=AUTH)).json()
    assert apps[0]["status"] == "notified" and apps[0]["pickup_date"], apps[0]
    assert answer == await say(client, mode, keyword)  # the same day, the same answer


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sentence", ["我没空去店里，卡寄给我吧", "can you mail the card instead"])
async def test_mailing_instead_of_pickup(client, mode, sentence):
    await _card_ready(client)
    ask = await say(client, mode, sentence)
    assert "上海市静安" in ask and "南京西路1000号" not in ask, ask
    await say(client, mode, "确认" if "寄" in sentence else "CONFIRM")
    apps = await (await client.get("/api/card-applications", headers=AUTH)).json()
    assert apps[0]["status"] == "mailed"


STOPS = ["以后别给我发短信了", "不要再发了", "我不想再收到你们的消息", "please stop texting me",
         "unsubscribe me please", "no more messages, thanks"]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sentence", STOPS)
async def test_stop_in_plain_words_is_honoured_and_recorded(client, mode, sentence):
    answer = await say(client, mode, sentence)
    zh = any("\u4e00" <= c <= "\u9fff" for c in sentence)
    assert ("已为您退订" if zh else "You are unsubscribed") in answer, answer
    view = await member(client)
    assert view["stopped"] is True
    (event,) = view["consent"]
    assert event["action"] == "stop" and event["channel"] == mode.split("-")[0]
    assert event["source"].startswith("sentence: ")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("resume", "marker"),
    [("恢复接收消息吧", "恢复接收"), ("start texting me again", "Welcome back")],
)
async def test_resume_in_plain_words(client, mode, resume, marker):
    await say(client, mode, "不要再给我发消息了")
    assert marker in await say(client, mode, resume)
    view = await member(client)
    assert view["stopped"] is False
    assert [c["action"] for c in view["consent"]] == ["stop", "resume"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "text", ["不用退订", "我没说要退订", "T恤多少钱", "停车怎么收费", "I will stop by tomorrow",
             "don't unsubscribe me", "is there a bus stop nearby"],
)  # fmt: skip
async def test_lookalikes_and_negations_are_not_stops(client, mode, text):
    answer = await say(client, mode, text)
    assert answer.strip()
    view = await member(client)
    assert view["stopped"] is False and view["consent"] == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_maybe_stop_is_asked_once_with_the_keyword_then_confirmed(client, mode):
    asked = await say(client, mode, "你们短信太多了")
    assert "TD" in asked and "确认" in asked, asked
    assert (await member(client))["stopped"] is False
    assert "已为您退订" in await say(client, mode, "确认")
    view = await member(client)
    assert view["stopped"] is True
    assert "你们短信太多了" in view["consent"][0]["source"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_maybe_stop_answered_otherwise_changes_nothing(client, mode):
    asked = await say(client, mode, "why do you keep texting me")
    assert "reply STOP" in asked, asked  # asked in the language written in
    points = await say(client, mode, "积分")
    assert points.startswith("张三") or "当前积分" in points  # no "cancelled" note
    assert (await member(client))["stopped"] is False


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("text", "marker"),
    [("你好", "张三，您好"), ("谢谢", "不客气，张三"), ("好的", "好的，张三"),
     ("早上好", "张三，您好"), ("👍", "好的，张三"), ("hi", "Hello 张三"),
     ("thanks!", "You're welcome, 张三")],
)  # fmt: skip
async def test_small_talk_gets_a_short_friendly_answer_by_name(client, mode, text, marker):
    answer = await say(client, mode, text)
    assert marker in answer, answer
    assert "没看懂" not in answer and "didn't catch" not in answer


@pytest.mark.parametrize("mode", MODES)
async def test_two_close_meanings_are_asked_with_numbered_options(client, mode):
    asked = await say(client, mode, "积分和券")
    assert "1. 查积分" in asked and "2. 看我的券" in asked, asked
    assert await say(client, mode, "2") == await say(client, mode, "券")
    await say(client, mode, "查一下")
    assert await say(client, mode, "1") == await say(client, mode, "积分")
    assert "没看懂" in await say(client, mode, "1")  # the question was answered once


@pytest.mark.parametrize("mode", MODES)
async def test_numbered_options_in_english_answer_in_english(client, mode):
    asked = await say(client, mode, "my points and vouchers")
    assert "1. your points" in asked and "2. your vouchers" in asked, asked
    assert "Points: 3,500" in await say(client, mode, "1")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("answer", "redeemed"), [("好的", True), ("👍", True), ("算了", False)])
async def test_a_plain_yes_confirms_what_the_bot_asked(client, mode, answer, redeemed):
    assert "确认用 3,000 分兑换" in await say(client, mode, "兑换 1")
    reply = await say(client, mode, answer)
    view = await member(client)
    assert len(view["vouchers"]) == (1 if redeemed else 0), reply
    assert ("兑换成功" in reply) is redeemed


@pytest.mark.parametrize("mode", MODES)
async def test_a_maybe_stop_from_a_stopped_member_asks_nothing(client, mode):
    await say(client, mode, "TD")
    assert "您已经退订了" in await say(client, mode, "你们短信太多了")
    assert len((await member(client))["consent"]) == 1
