"""SMS template shapes (scheduler/sms_shapes.py): the approved-template form of every kind
and reply is derived from our own templates, and every text the renderer makes splits
back into that template's variables."""

from __future__ import annotations

import re

import pytest

from models.kinds import KINDS, MessageClass
from models.settings.sections import AliyunSmsSettings
from scheduler.render import render_message, sample_contexts
from scheduler.sms_review import review, template_sheet
from scheduler.sms_shapes import (
    NOTICE_HINT,
    PROMO_HINT,
    find_reply,
    match,
    reply_names,
    shapes,
)
from scheduler.text import render

ADJACENT = re.compile(r"\}[^\w$]*\$\{")
"""Two variables with nothing but spaces or punctuation between (Aliyun refuses those)."""


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_rendered_message_splits_into_one_of_its_templates(kind, locale):
    for ctx in sample_contexts(kind, locale):
        text = render_message(kind, locale, **ctx)
        found = match(kind, locale, text)
        assert found is not None, (kind, text)
        s, values = found
        assert set(values) == set(s.variables)
        assert all(values.values()), values  # never an empty variable


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_stop_hint_is_the_form_aliyun_requires(kind):
    for s in shapes(kind, "zh_CN"):
        text = s.text()
        promo = KINDS[kind].message_class is not MessageClass.SERVICE
        assert text.endswith(PROMO_HINT if promo else NOTICE_HINT), text
        assert ("拒收请回复R" in text) == promo  # notification templates must not carry it
        assert "回复TD退订" not in text  # our own hint is replaced, not doubled


def test_templates_are_in_dollar_syntax_with_no_adjacent_variables_or_brackets():
    for locale in ("zh_CN", "en"):
        for entry in template_sheet(locale):
            text = entry.shape.text()
            assert "{{" not in text and "{%" not in text, text
            assert not ADJACENT.search(text), (entry.shape.key, text)
            assert "【" not in text  # Aliyun prints the signature itself
            for name in entry.shape.variables:
                assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
                assert text.count("${" + name + "}") == 1


def test_the_store_and_assistant_become_one_signature_variable():
    [s] = shapes("card_pickup", "zh_CN")
    assert "——${signature}" in s.text()
    text = render_message("card_pickup", "zh_CN", **sample_contexts("card_pickup", "zh_CN")[0])
    assert s.split(text)["signature"] == "静安店 小李"


def test_a_member_without_a_name_gets_a_form_of_address_not_an_empty_variable():
    ctx = {**sample_contexts("birthday", "zh_CN")[1], "member_name": ""}
    _, values = match("birthday", "zh_CN", render_message("birthday", "zh_CN", **ctx))
    assert values["member_name"] == "亲爱的会员，"


def test_the_assistants_note_goes_only_inside_a_variable():
    ctx = sample_contexts("birthday", "zh_CN")[0]
    note = ctx["note"]
    s, values = match("birthday", "zh_CN", render_message("birthday", "zh_CN", **ctx))
    assert note not in s.text()
    assert [name for name, value in values.items() if note in value] == ["note_etc"]


def test_replies_are_found_by_their_shape():
    text = render("points", "zh_CN", name="王女士", points=3200, tier="金卡", spend=4280,
                  reward=None, next_tier=None, expiring=None, birthday_factor=None)  # fmt: skip
    found = find_reply(text)
    assert found is not None
    s, values = found
    assert s.key.startswith("reply_points") and (values["points"], values["tier"]) == (
        "3,200",
        "金卡",
    )
    keys = {s.key for r in reply_names() for s in shapes(r, "zh_CN", reply=True)}
    assert {"reply_stop_done", "reply_stop_done_2"} <= keys


def test_the_binding_code_sms_drops_the_bracketed_brand():
    text = render("bind_code_sms", "zh_CN", brand="静安时装", code="123456", minutes=10)
    s, values = find_reply(text)
    assert s.key == "reply_bind_code_sms" and not s.text().startswith("【")
    assert "123456" in values["code_etc"]


def test_the_review_lists_every_kind_and_reply_without_a_code():
    found = review(AliyunSmsSettings(templates={"points_notice": "SMS_1", "nonsense": "SMS_2"}))
    missing = {f.key for f in found if f.rule == "missing_code"}
    keys = {e.shape.key for e in template_sheet("zh_CN")}
    assert missing == keys - {"points_notice"}
    assert {"holiday", "holiday_2", "holiday_10", "reply_points"} <= keys
    assert [f.key for f in found if f.rule == "unknown_key"] == ["nonsense"]


def test_the_review_names_variables_over_the_length_limit():
    codes = {e.shape.key: "SMS_1" for e in template_sheet("zh_CN")}
    found = review(AliyunSmsSettings(templates=codes))
    variables = [f for f in found if f.rule == "variable"]
    assert {f.key for f in variables} == {"care_d3", "care_d7"}  # the care tips: 44, 53
    assert all("variable_max_length is 35" in f.detail for f in variables)
    lifted = review(AliyunSmsSettings(templates=codes, variable_max_length=500))
    assert [(f.rule, f.key) for f in lifted] == [("only_variables", "personal_greeting_7")]


def test_each_festival_is_a_template_of_its_own():
    texts = [s.text() for s in shapes("holiday", "zh_CN")]
    assert any(t.startswith("${member_name}新春快乐！") for t in texts)
    assert any(t.startswith("${member_name}中秋快乐！") for t in texts)
    ctx = next(c for c in sample_contexts("holiday", "zh_CN") if c["festival"] == "mid_autumn")
    s, values = match("holiday", "zh_CN", render_message("holiday", "zh_CN", **ctx))
    assert s.text().startswith("${member_name}中秋快乐！") and values["member_name"] == "王女士，"
