"""The message rules checker (DOMAIN.md §7.1-7.4, §7.6; MESSAGING.md "Message classes")."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from models.kinds import (
    CARE_KINDS,
    GREETING_KINDS,
    KINDS,
    SERVICE_KINDS,
    STOP_HINTS,
    MessageClass,
    kind_spec,
)
from models.settings.lexicon import Lexicon, Words, normalize
from models.settings.load import ConfigError, load_settings
from scheduler.message_rules import check, check_content, render_checked

LEX = Lexicon()
STORE_ZH, ASSISTANT_ZH = "静安店", "小李"
STORE_EN, ASSISTANT_EN = "Jing'an Store", "Lily"


def zh(body: str) -> str:
    """A Chinese message: body, signature line, stop hint."""
    return f"{body}\n——{STORE_ZH} {ASSISTANT_ZH}\n回复TD退订"


def en(body: str) -> str:
    return f"{body}\n— {STORE_EN}, {ASSISTANT_EN}\nReply STOP to opt out"


def rules(kind: str, text: str, locale: str = "zh_CN", lexicon: Lexicon = LEX) -> list[str]:
    store, assistant = (STORE_EN, ASSISTANT_EN) if locale == "en" else (STORE_ZH, ASSISTANT_ZH)
    found = check(
        kind, text, locale=locale, lexicon=lexicon, store_name=store, assistant_name=assistant
    )
    return [v.rule for v in found]


# --------------------------------------------------------------------------- kinds


def test_kinds_match_the_contract():
    assert set(KINDS) == {
        "points_notice", "care_d3", "care_d7", "care_d10", "care_d30", "care_d120",
        "card_pickup", "card_pickup_again", "card_mailed", "birthday", "wedding_anniversary",
        "join_anniversary", "holiday", "seasonal", "dormant", "points_expiry",
        "personal_greeting", "voucher_expiry", "voucher_issued",
    }  # fmt: skip
    assert {
        "birthday", "wedding_anniversary", "join_anniversary", "holiday", "seasonal",
        "dormant", "personal_greeting",
    } == GREETING_KINDS  # fmt: skip
    assert {
        "points_notice",
        "card_pickup",
        "card_pickup_again",
        "card_mailed",
        "points_expiry",
        "voucher_expiry",  # issue 13: service notices, like points_expiry
        "voucher_issued",
    } == SERVICE_KINDS
    assert {"care_d3", "care_d7", "care_d10", "care_d30", "care_d120"} == CARE_KINDS


def test_kind_classes_decide_signature_hint_and_allowances():
    assert kind_spec("birthday").message_class is MessageClass.GREETING
    assert kind_spec("birthday").needs_signature and kind_spec("care_d3").needs_signature
    assert not kind_spec("points_notice").needs_signature
    assert all(s.needs_stop_hint and not s.promotion_allowed for s in KINDS.values())
    assert [k for k, s in KINDS.items() if s.new_arrivals_allowed] == ["care_d30"]
    assert {k for k, s in KINDS.items() if s.care_tips} == {"care_d3", "care_d7"}


def test_unknown_kind_or_locale_is_an_error():
    with pytest.raises(ValueError, match="unknown message kind"):
        check("flash_sale", zh("hi"), locale="zh_CN", lexicon=LEX)
    with pytest.raises(ValueError, match="unsupported locale"):
        check("birthday", zh("hi"), locale="fr", lexicon=LEX)


# --------------------------------------------------------------------------- promotion


@pytest.mark.parametrize(
    "body",
    [
        "生日快乐！本周店里有活动，欢迎来看看",
        "生日快乐！全场8折",
        "生日快乐！全场８折",  # full-width digit
        "生日快乐！全场八五折",
        "生日快乐！羊毛大衣仅需¥199",
        "生日快乐！仅需￥1,299",  # full-width yen sign
        "生日快乐！只要199元",
        "生日快乐！满300送50",
        "生日快乐！送您一张优惠券",
        "生日快乐！今天消费双倍积分",
        "生日快乐！新品到了",
        "生日快乐！新 品到了",  # spaced out
        "生日快乐！店里上新啦",
        "Happy birthday! Our SALE starts today",
        "Happy birthday! Take 20% off",
        "Happy birthday! Special OFFERS for you",
        "Happy birthday! Here is a coupon",
        "Happy birthday! Join our member event",
        "Happy birthday! New arrivals are in",
        "Happy birthday! Only $49",
        "Happy birthday! A limited-time treat",
        "Happy birthday! Ｓａｌｅ today",  # full-width letters
    ],
)
def test_promotion_in_greeting_is_flagged(body):
    assert "promotion_in_greeting" in rules("birthday", zh(body))
    assert "promotion_in_greeting" in rules("holiday", en(body), "en")


@pytest.mark.parametrize(
    "body",
    [
        "生日快乐！愿您平安喜乐",
        "2026元旦快乐！",  # 元 before 旦 is not a price
        "事业更上新台阶，多到户外活动活动筋骨",  # allow-listed phrases
        "衣服可以对折收纳",  # 折 without a number
        "Happy birthday! Thank you for the kindness you offered us",  # offered ≠ offer
        "Eventually every day is a good one",  # eventually ≠ event
        "A priceless moment",  # priceless ≠ price
        "Wishing you a great deal of happiness",  # allow-listed
        "Wishing you a wonderful year",
    ],
)
def test_harmless_words_are_not_flagged(body):
    assert rules("birthday", zh(body)) == []
    assert rules("birthday", en(body), "en") == []


def test_the_stop_hints_themselves_are_never_a_hit():
    for hint in STOP_HINTS.values():
        for kind in KINDS:
            assert check_content(kind, hint, lexicon=LEX) == []
    # even with a lexicon that lists words from the hints
    eager = Lexicon(promotion=Words(zh=("退订",), en=("stop", "opt out")))
    assert rules("birthday", zh("生日快乐"), lexicon=eager) == []
    assert rules("birthday", en("Happy birthday"), "en", lexicon=eager) == []
    assert rules("birthday", zh("生日快乐，退订请回复"), lexicon=eager) == ["promotion_in_greeting"]


def test_a_personal_note_about_new_arrivals_is_rejected_in_a_greeting():
    result = render_checked(
        "personal_greeting",
        "zh_CN",
        lexicon=LEX,
        member_name="王女士",
        store_name=STORE_ZH,
        assistant_name=ASSISTANT_ZH,
        note="新品到了，有空来看看！",
    )
    assert [v.rule for v in result.violations] == ["promotion_in_greeting"]
    assert "新品" in result.violations[0].detail
    assert not result.ok


def test_care_d30_may_mention_new_arrivals_but_never_a_discount():
    assert rules("care_d30", zh("最近好吗？店里来了些新品")) == []
    assert rules("care_d30", en("Hope you are well. A few new arrivals are in"), "en") == []
    assert rules("care_d30", zh("店里来了些新品，全场打折")) == ["promotion_in_care"]
    assert rules("care_d30", en("New arrivals, 30% off"), "en") == ["promotion_in_care"]


@pytest.mark.parametrize("kind", ["care_d3", "care_d7", "care_d10", "care_d120"])
def test_other_care_may_not_mention_new_arrivals(kind):
    assert rules(kind, zh("大衣穿着还合适吗？店里新款到货了")) == ["new_arrivals_in_care"] * 2
    assert rules(kind, en("How is the coat? New collection just arrived"), "en") == [
        "new_arrivals_in_care",
        "new_arrivals_in_care",
    ]
    assert rules(kind, zh("大衣穿着还合适吗？羊毛制品建议平铺晾干")) == []


@pytest.mark.parametrize("kind", sorted(SERVICE_KINDS))
def test_service_notices_carry_no_promotion(kind):
    assert rules(kind, zh("您的积分3,200分。本周店里有活动")) == ["promotion_in_service_notice"]
    assert rules(kind, en("3,200 points. Double points this weekend"), "en") == [
        "promotion_in_service_notice"
    ]
    assert rules(kind, zh("您的积分3,200分，新品已到店")) == ["promotion_in_service_notice"]
    assert rules(kind, zh("累计消费4280元")) == ["promotion_in_service_notice"]  # not from data
    assert rules(kind, zh("您的金卡已经办好，欢迎到店领取")) == []


def test_member_record_values_are_exempt_but_the_same_words_elsewhere_are_not():
    ctx = dict(
        member_name="王女士",
        store_name=STORE_ZH,
        assistant_name=ASSISTANT_ZH,
        purchase_store="静安店",
        purchase_date=date(2026, 11, 5),
        items=["新款羊毛大衣"],
        points=3200,
        cumulative_spend=Decimal("4280"),
        missing_for_reward=800,
        reward_name="300元代金券",
    )
    assert render_checked("points_notice", "zh_CN", lexicon=LEX, **ctx).ok
    en_ctx = {**ctx, "items": ["new style coat"], "reward_name": "300-yuan voucher"}
    result = render_checked("points_notice", "en", lexicon=LEX, **en_ctx)
    assert result.ok, result  # "¥4,280" is the member's own total spend
    # the same words written by the brand are flagged
    assert rules("points_notice", zh("送您一张300元代金券")) == ["promotion_in_service_notice"] * 2


# --------------------------------------------------------------------------- seasonal, dormant


def test_seasonal_never_names_products():
    assert (
        rules("seasonal", zh("今日立冬，记得穿上羽绒服、戴好围巾")) == ["product_in_seasonal"] * 2
    )
    assert rules("seasonal", en("Start of Winter: time for a warm coat and boots"), "en") == [
        "product_in_seasonal",
        "product_in_seasonal",
    ]
    assert rules("seasonal", zh("今日立冬，天气渐寒，出门添衣保暖")) == []
    assert rules("seasonal", en("Start of Winter: dress warmly and rest"), "en") == []
    assert rules("seasonal", en("Start of Winter: a new dress for you"), "en") == [
        "product_in_seasonal",
        "promotion_in_greeting",  # by meaning: a new dress is a new-arrival push
    ]
    # products are fine where they are the subject: care tips, points notices
    assert rules("care_d3", zh("羽绒服建议手洗")) == []


def test_dormant_never_asks_what_happened():
    assert rules("dormant", zh("好久不见，是不是不满意？发生了什么")) == [
        "prying_in_dormant",
        "prying_in_dormant",
    ]
    assert rules("dormant", en("Long time! Is everything OK?"), "en") == ["prying_in_dormant"]
    assert rules("dormant", en("Why haven\u2019t you visited?"), "en") == ["prying_in_dormant"]
    assert rules("dormant", zh("好久不见，大家都很想念您，记得好好休息")) == []
    assert rules("dormant", en("We miss you; remember to rest"), "en") == []
    # the prying words are a dormant rule only
    assert rules("care_d120", zh("最近一切都好吗？")) == []


# --------------------------------------------------------------------------- signature, hint


def test_greetings_and_care_end_with_store_and_assistant():
    for kind in sorted(GREETING_KINDS | CARE_KINDS):
        assert rules(kind, "生日快乐\n回复TD退订") == ["missing_signature"]
        assert rules(kind, "生日快乐\n——静安店\n回复TD退订") == ["missing_signature"]
        assert rules(kind, "——静安店 小李\n生日快乐\n回复TD退订") == ["missing_signature"]
        assert rules(kind, zh("生日快乐")) == []
        assert rules(kind, "生日快乐 ——静安店 小李 回复TD退订") == []
        assert rules(kind, "生日快乐\n——静安店 小李（回复TD退订）") == []
    # without names there is nothing to check; service notices need none
    assert check("birthday", "生日快乐\n回复TD退订", locale="zh_CN", lexicon=LEX) == []
    assert rules("points_notice", "积分3,200分\n回复TD退订") == []


def test_every_proactive_message_carries_the_stop_hint_of_its_locale():
    for kind in KINDS:
        assert rules(kind, "生日快乐\n——静安店 小李") == ["missing_stop_hint"]
        assert rules(kind, en("Happy birthday"), "zh_CN")[-1] == "missing_stop_hint"
        assert rules(kind, zh("生日快乐"), "en")[-1] == "missing_stop_hint"
        assert rules(kind, "生日快乐\n——静安店 小李\n回复ＴＤ退订") == []  # full-width


# --------------------------------------------------------------------------- lexicon config


def test_normalize_folds_width_case_and_quotes():
    assert normalize("ＳＡＬＥ ￥１９９ What\u2019s\u200b") == "sale ¥199 what's"


def test_lexicon_is_configurable_from_settings(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[messaging.lexicon.promotion]\nzh = ["团购"]\nen = ["flash"]\n', encoding="utf-8"
    )
    settings = load_settings(path, environ={})
    lexicon = settings.messaging.lexicon
    assert rules("birthday", zh("生日快乐，团购进行中"), lexicon=lexicon) == [
        "promotion_in_greeting"
    ]
    assert rules("birthday", zh("生日快乐，促销进行中"), lexicon=lexicon) == []  # list replaced
    assert lexicon.new_arrivals == Lexicon().new_arrivals  # other categories keep defaults
    env = {"MEMBERBOT_MESSAGING_LEXICON_PRYING_EN": '["where were you"]'}
    lexicon = load_settings(environ=env).messaging.lexicon
    assert rules("dormant", en("Where were you?"), "en", lexicon=lexicon) == ["prying_in_dormant"]


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        (
            '[messaging.lexicon.promotion]\nzh = ["re:(unclosed"]\n',
            "messaging.lexicon.promotion.zh",
        ),
        ('[messaging.lexicon.products]\nen = ["re:x*"]\n', "messaging.lexicon.products.en"),
        ('[messaging.lexicon.allow]\nzh = [" "]\n', "messaging.lexicon.allow.zh"),
        # a global flag compiles alone but not inside the joined alternation
        ('[messaging.lexicon.promotion]\nen = ["re:(?i)mega"]\n', "messaging.lexicon.promotion.en"),
        ("[messaging.lexicon]\nslang = []\n", "messaging.lexicon.slang"),
    ],
)
def test_a_bad_lexicon_stops_start_up_naming_the_key(tmp_path, toml, key):
    path = tmp_path / "config.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(path, environ={})
