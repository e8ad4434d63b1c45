"""Keyword matching (CONTRACT.md "Member keywords"): normalisation, every word, arguments."""

from __future__ import annotations

from datetime import date

import pytest

from bot.handlers.card import mask_address
from bot.handlers.daytext import parse_day
from bot.router import KEYWORDS, MENU_KEYS, Intent, item_number, normalise, route, route_menu

CONTRACT_WORDS = {
    Intent.POINTS: ["积分", "查积分", "JF", "POINTS", "BALANCE"],
    Intent.REDEEM: ["兑换", "DH", "REDEEM"],
    Intent.CONFIRM: ["确认", "CONFIRM", "YES"],
    Intent.VOUCHERS: ["券", "我的券", "VOUCHERS"],
    Intent.PICKUP: ["领卡", "LK", "PICKUP"],
    Intent.MAIL: ["寄卡", "MAIL"],
    Intent.STOP: [
        "不接受", "退订", "TD", "T", "STOP", "STOPALL", "UNSUBSCRIBE",
        "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
    ],
    Intent.RESUME: ["接受", "订阅", "START", "UNSTOP"],
    Intent.HELP: ["帮助", "HELP", "INFO", "?"],
    Intent.BIND: ["绑定", "BIND"],
}


@pytest.mark.parametrize(
    ("intent", "word"), [(i, w) for i, words in CONTRACT_WORDS.items() for w in words]
)
def test_every_contract_word_in_any_case(intent, word):
    assert route(word).intent is intent
    assert route(word.lower()).intent is intent
    assert route(f"  {word.title()}！ ").intent is intent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＪＦ", "jf"),
        ("  积分！", "积分"),
        ("积分。。。", "积分"),
        ("【积分】", "积分"),
        ("“兑换”", "兑换"),
        ("Redeem   1", "redeem 1"),
        ("兑换：1", "兑换 1"),
        ("兑换，２", "兑换 2"),
        ("ＢＩＮＤ　＋８６１３８００１３８０００", "bind +8613800138000"),
        ("领卡 11-28!", "领卡 11-28"),
        ("积分😊", "积分"),
        ("", ""),
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "intent", "args"),
    [
        ("ＪＦ", Intent.POINTS, ""),
        ("  积分！", Intent.POINTS, ""),
        ("redeem 1", Intent.REDEEM, "1"),
        ("REDEEM 1", Intent.REDEEM, "1"),
        ("兑换1", Intent.REDEEM, "1"),
        ("兑换 1", Intent.REDEEM, "1"),
        ("兑换１", Intent.REDEEM, "1"),
        ("dh2", Intent.REDEEM, "2"),
        ("redeem2", Intent.REDEEM, "2"),
        ("领卡 周六", Intent.PICKUP, "周六"),
        ("领卡周六", Intent.PICKUP, "周六"),
        ("PICKUP sat", Intent.PICKUP, "sat"),
        ("LK 11-28", Intent.PICKUP, "11-28"),
        ("绑定 13800138000", Intent.BIND, "13800138000"),
        ("绑定13800138000", Intent.BIND, "13800138000"),
        ("BIND +8613800138000", Intent.BIND, "+8613800138000"),
        ("bind+8613800138000", Intent.BIND, "+8613800138000"),
        ("?", Intent.HELP, ""),
        ("？", Intent.HELP, ""),
        ("??", Intent.HELP, ""),
        ("帮助？", Intent.HELP, ""),
        ("T", Intent.STOP, ""),
        ("t", Intent.STOP, ""),
        ("td", Intent.STOP, ""),
        ("TD退订", Intent.STOP, ""),
        ("回复TD退订", Intent.STOP, ""),
        ("我要退订", Intent.STOP, ""),
        ("stop all", Intent.STOP, ""),
        ("STOP please", Intent.STOP, ""),
        ("123456", Intent.CODE, "123456"),
        ("１２３４５６", Intent.CODE, "123456"),
        ("确认！", Intent.CONFIRM, ""),
    ],
)
def test_route(text, intent, args):
    m = route(text)
    assert (m.intent, m.args) == (intent, args)


@pytest.mark.parametrize(
    "text",
    [
        "T 恤多少钱",  # a T-shirt question is no stop
        "T恤",
        "thanks",
        "Thank you",
        "tomorrow",
        "endless",
        "stopwatch",
        "redeemx",
        "bindings",
        "hello",
        "12345",
        "1234567",
        "",
        "   ",
        "!!!",
    ],
)
def test_not_keywords(text):
    assert route(text).intent is Intent.UNKNOWN


def test_stop_words_are_not_first_word_prefixes():
    # A stop word followed by other words is not a stop (carriers match the whole body).
    assert route("end of story").intent is Intent.UNKNOWN
    assert route("cancel my order").intent is Intent.UNKNOWN


def test_keyword_sets_are_disjoint():
    seen: dict[str, Intent] = {}
    for intent, words in KEYWORDS.items():
        for w in words:
            assert w not in seen, f"{w!r} is both {seen[w]} and {intent}"
            seen[w] = intent


def test_menu_keys_map_to_intents():
    assert route_menu("MENU_POINTS").intent is Intent.POINTS
    assert route_menu("menu_rewards").intent is Intent.REDEEM
    assert route_menu("MENU_VOUCHERS").intent is Intent.VOUCHERS
    assert route_menu("MENU_CARD").intent is Intent.PICKUP
    assert route_menu("MENU_BIND").intent is Intent.BIND
    assert route_menu("MENU_HELP").intent is Intent.HELP
    assert route_menu("SOMETHING_ELSE").intent is Intent.HELP
    assert route_menu(None).intent is Intent.HELP
    assert set(MENU_KEYS) == {
        "MENU_POINTS", "MENU_REWARDS", "MENU_VOUCHERS", "MENU_CARD", "MENU_BIND", "MENU_HELP"
    }


@pytest.mark.parametrize(
    ("args", "number"),
    [
        ("1", 1), ("第2个", 2), ("3号", 3), ("no 4", 4),
        ("三", 3), ("十", 10), ("券", None), ("", None),
    ],
)
def test_item_number(args, number):
    assert item_number(args) == number


WED = date(2026, 11, 25)  # a Wednesday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今天", WED),
        ("today", WED),
        ("明天", date(2026, 11, 26)),
        ("Tomorrow", date(2026, 11, 26)),
        ("后天", date(2026, 11, 27)),
        ("周六", date(2026, 11, 28)),
        ("星期六", date(2026, 11, 28)),
        ("礼拜六", date(2026, 11, 28)),
        ("sat", date(2026, 11, 28)),
        ("Saturday", date(2026, 11, 28)),
        ("周三", WED),  # today is a Wednesday: today counts
        ("周一", date(2026, 11, 30)),
        ("星期天", date(2026, 11, 29)),
        ("周日", date(2026, 11, 29)),
        ("下周三", date(2026, 12, 2)),
        ("下周日", date(2026, 12, 6)),
        ("next sat", date(2026, 12, 5)),
        ("11-28", date(2026, 11, 28)),
        ("11/28", date(2026, 11, 28)),
        ("11.28", date(2026, 11, 28)),
        ("11月28日", date(2026, 11, 28)),
        ("12月1号", date(2026, 12, 1)),
        ("2026-12-01", date(2026, 12, 1)),
        ("2026年12月1日", date(2026, 12, 1)),
        ("01-05", date(2027, 1, 5)),  # long past this year: next year
        ("11-20", date(2026, 11, 20)),  # just past: stays past (the caller refuses it)
        ("13-01", None),
        ("02-30", None),
        ("someday", None),
        ("周八", None),
    ],
)
def test_parse_day(text, expected):
    assert parse_day(text, WED) == expected


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("上海市静安区南京西路1234号5楼", "上海市静安区****"),
        ("12 Baker Street, London", "12 Bak****"),
        ("短地址", "短地****"),
    ],
)
def test_mask_address(address, masked):
    assert mask_address(address) == masked


def test_configured_keywords_are_added_to_the_contract_words():
    from bot.router import Router
    from models.settings.load import load_settings

    settings = load_settings(
        None, environ={"MEMBERBOT_KEYWORDS_POINTS": '["查分", "Score"]',
                       "MEMBERBOT_KEYWORDS_STOP": '["别发了"]'}
    )
    router = Router(settings.keywords.model_dump())
    assert router.route("查分").intent is Intent.POINTS
    assert router.route("SCORE").intent is Intent.POINTS
    assert router.route("别发了").intent is Intent.STOP
    # the contract's words keep working next to the store's own
    assert router.route("积分").intent is Intent.POINTS
    assert router.route("TD").intent is Intent.STOP
    # and the default router knows none of the store's words
    assert route("查分").intent is Intent.UNKNOWN
