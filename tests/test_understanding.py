"""The understanding layer's parts: normalising, language, days, arguments, reading."""

from __future__ import annotations

from datetime import date

import pytest

from bot.handlers.daytext import day_phrase, parse_day
from bot.router import Intent, Router
from bot.understand.engine import Understander
from bot.understand.reader import Reader
from bot.understand.text import language, prepare
from models.rules import RewardRules

TODAY = date(2026, 12, 2)  # a Wednesday
CATALOGUE = RewardRules().catalogue
U = Understander(CATALOGUE)


@pytest.mark.parametrize(
    ("raw", "text"),
    [("我的劵", "我的券"), ("積分查詢", "积分查询"), ("咋查积分？", "怎么查积分"),
     ("俺的积份", "我的积分"), ("ＪＦ", "积分"), ("yhq", "优惠券"), ("👍", "好的"),
     ("I don't want ur msgs", "i do not want your messages")],
)  # fmt: skip
def test_prepare_mends_typos_dialect_full_width_pinyin_and_emoji(raw, text):
    assert prepare(raw).text == text


@pytest.mark.parametrize(
    ("raw", "lang"),
    [("积分", "zh_CN"), ("POINTS", "en"), ("how many points", "en"), ("JF", None), ("TD", None),
     ("1", None), ("👍", None), ("T", None)],
)  # fmt: skip
def test_language_of_a_message(raw, lang):
    assert language(raw) == lang


@pytest.mark.parametrize(
    ("text", "day"),
    [("大后天", date(2026, 12, 5)), ("周六下午", date(2026, 12, 5)), ("这周六", date(2026, 12, 5)),
     ("下下周三", date(2026, 12, 16)), ("十二月十二号", date(2026, 12, 12)),
     ("12号", date(2026, 12, 12)),
     ("1号", date(2027, 1, 1)), ("明天上午10点", date(2026, 12, 3)), ("明儿", date(2026, 12, 3)),
     ("tomorrow afternoon", date(2026, 12, 3)), ("this saturday", date(2026, 12, 5)),
     ("sat at 3pm", date(2026, 12, 5)), ("dec 12", date(2026, 12, 12)),
     ("12th of december", date(2026, 12, 12)), ("the 5th", date(2026, 12, 5))],
)  # fmt: skip
def test_more_days_in_words(text, day):
    assert parse_day(text, TODAY) == day


def test_a_day_inside_a_sentence():
    assert day_phrase("我明天下午去店里拿卡") == "明天下午"
    assert day_phrase("can i collect on saturday at 3pm") == "saturday at 3pm"
    assert day_phrase("我想领卡") is None


@pytest.mark.parametrize(
    ("text", "intent", "args"),
    [("我要换300的券", Intent.REDEEM, "1"), ("兑换第一个", Intent.REDEEM, "第一个"),
     ("redeem the 300 yuan voucher please", Intent.REDEEM, "1"), ("换500的券", Intent.REDEEM, ""),
     ("明天下午去店里领卡", Intent.PICKUP, "明天下午"), ("我没空去店里，寄给我吧", Intent.MAIL, ""),
     ("我的手机号是13800138000，帮我绑定", Intent.BIND, "13800138000"),
     ("积分和券", Intent.CLARIFY, "points=;vouchers="), ("这件大衣有没有L码", Intent.HANDOFF, ""),
     ("王芳在吗", Intent.HANDOFF, ""), ("谢谢", Intent.SMALLTALK, "thanks"),
     ("短信太多了", Intent.MAYBE_STOP, ""), ("怎么退订", Intent.MAYBE_STOP, ""),
     ("以后别给我发短信了", Intent.STOP, ""), ("please stop texting me", Intent.STOP, ""),
     ("恢复接收消息", Intent.RESUME, ""), ("不用退订", Intent.UNKNOWN, ""),
     ("T恤多少钱", Intent.HANDOFF, ""), ("停车怎么收费", Intent.HANDOFF, ""),
     ("I will stop by tomorrow", Intent.HANDOFF, ""), ("asdfgh", Intent.UNKNOWN, "")],
)  # fmt: skip
def test_reader_gives_the_keyword_match_a_sentence_means(text, intent, args):
    match = Reader(Router(), CATALOGUE).read(text)
    assert (match.intent, match.args) == (intent, args)


def test_keywords_are_matched_first_and_keep_their_meaning():
    reader = Reader(Router(), CATALOGUE)
    for word, intent in (("T", Intent.STOP), ("STOP", Intent.STOP), ("积分", Intent.POINTS),
                         ("兑换 1", Intent.REDEEM), ("领卡 周六", Intent.PICKUP)):  # fmt: skip
        match = reader.read(word)
        assert match.intent is intent and not match.sentence
    assert reader.read("POINTS").lang == "en" and reader.read("JF").lang is None
    # a keyword whose argument is a sentence is read as the sentence
    assert reader.read("兑换啥好").args == ""
    assert reader.read("领卡 someday").args == "someday"  # the handler says it is no day


def test_understanding_is_deterministic():
    assert U.understand("我还有多少积分") == U.understand("我还有多少积分")
