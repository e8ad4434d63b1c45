"""Greeting notes judged by meaning (issue 12): `scheduler.meaning` inside the one rules
check (`scheduler.message_rules.check`) that the planner, `memberbot lint`,
`POST /api/greetings`, `memberbot greet` and the staff console preview share."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from pathlib import Path

import pytest

import bot.api.greetings
from bot.app import create_app
from models.settings.lexicon import Lexicon, Words, normalize
from scheduler import meaning, render
from scheduler.message_rules import check, check_content, lint_all
from tests.test_greet_cli import config, one_error_line, outbox_rows, run, seeded  # noqa: F401
from tests.test_greetings_api import NOON, PHONE, Clock, call, rows, seed
from tests.test_planner import member, one, plan, shop
from tests.test_staff_console import client, csrf_of, sign_in, world  # noqa: F401

LEX = Lexicon()
CORPUS = Path(__file__).resolve().parents[1] / "bench" / "corpus"
ISSUE_PROMOTIONS = ["欢迎到店选购", "冬装已经到了，来店里看看吧", "给您留了一件羊绒大衣",
                    "本周末店庆，来玩呀", "积分可以换礼品了"]  # fmt: skip
ISSUE_PRYING = ["最近怎么都不来了呀", "是不是我们哪里做得不好"]
WARM = ["天冷了注意保暖", "祝您和家人中秋团圆", "出差路上注意安全", "好久不见，最近好吗?",
        "Long time no see, how have you been?", "Safe travels, say hi to your family!"]  # fmt: skip


def rules_of(kind: str, note: str, lexicon: Lexicon = LEX) -> list[str]:
    return [v.rule for v in check_content(kind, note, lexicon=lexicon)]


# --------------------------------------------------------------------------- the check


@pytest.mark.parametrize("note", ISSUE_PROMOTIONS)
def test_the_issues_promotions_are_refused_in_every_greeting(note):
    assert rules_of("birthday", note) == ["promotion_in_greeting"]
    assert rules_of("personal_greeting", note) == ["promotion_in_greeting"]
    assert rules_of("dormant", note) == ["promotion_in_greeting"]


@pytest.mark.parametrize("note", ISSUE_PRYING)
def test_the_issues_prying_is_refused_in_a_dormant_note(note):
    assert rules_of("dormant", note) == ["prying_in_dormant"]
    assert rules_of("birthday", note) == []  # prying is the dormant rule (DOMAIN.md §7.4)


@pytest.mark.parametrize("note", WARM)
def test_warm_notes_pass(note):
    assert rules_of("dormant", note) == []


@pytest.mark.parametrize(
    "warm, promoting",
    [
        ("冬天到了，注意保暖", "冬装到了，很保暖"),  # the season vs the goods
        ("春天来了，出去走走吧", "春装来了，出来看看吧"),
        ("好久不见，最近怎么样？", "好久不见，最近怎么不来了？"),  # greeting vs prying
        ("给您留言是想说声节日快乐", "给您留了一条围巾"),  # a message vs a held item
        ("送上最真挚的祝福", "送您一份小礼物"),  # wishes vs a gift
        ("只要您开心就好", "只要三百九"),  # a wish vs a price
        ("长命百岁", "六百多一件"),
        ("The shop team all send their love.", "Come shop with us this weekend."),
        ("Spring has arrived, enjoy the sun.", "The spring collection has arrived."),
        ("Hope you get some free time to rest.", "A free alteration is yours."),
        ("We're all thinking of you at the store.", "Pop into the store and say hi."),
        ("Congratulations on your promotion!", "Your points can be exchanged for a gift."),
        ("谢谢您今天来店里", "欢迎您明天来店里"),  # thanks for a visit vs an invitation
        ("Thanks for coming in last week!", "Come in next week!"),
    ],
)
def test_lookalikes(warm, promoting):
    assert rules_of("birthday", warm) == [] or rules_of("dormant", warm) == []
    assert rules_of("dormant", warm) == []
    assert set(rules_of("dormant", promoting)) & {"promotion_in_greeting", "prying_in_dormant"}


def test_the_violation_names_the_rule_and_what_was_meant():
    (v,) = check_content("birthday", "给您留了一件羊绒大衣", lexicon=LEX)
    assert v.rule == "promotion_in_greeting"
    assert v.detail == 'an item held for the member "给您留了" in a greeting (birthday)'
    (v,) = check_content("dormant", "最近怎么都不来了呀", lexicon=LEX)
    assert v.detail == 'asking why the member stayed away "怎么都不来" in a greeting (dormant)'


def test_a_rule_the_words_broke_is_not_named_twice():
    (v,) = check_content("birthday", "新品到店，欢迎选购", lexicon=LEX)
    assert (v.rule, v.detail) == (
        "promotion_in_greeting",
        'new-arrival word "新品" in a greeting (birthday)',
    )


def test_service_and_care_texts_are_not_judged_by_meaning():
    """Coming to the store to pick up a card, or a care tip's "come in for a fitting",
    is what those kinds are for; only greetings are judged by meaning."""
    assert rules_of("card_pickup", "请到店领取会员卡") == []
    assert rules_of("care_d10", "如需修改裤长，欢迎到店") == []


def test_member_record_values_and_stop_hints_are_masked():
    text = "张三，生日快乐！\n——新品汇到店 王丽\n回复TD退订"
    found = check("birthday", text, locale="zh_CN", lexicon=LEX,
                  store_name="新品汇到店", assistant_name="王丽")  # fmt: skip
    assert found == []  # the store's own name is not a promotion
    en = "Happy birthday!\n— Drop In Boutique, Lily\nReply STOP to opt out"
    found = check("birthday", en, locale="en", lexicon=LEX,
                  store_name="Drop In Boutique", assistant_name="Lily")  # fmt: skip
    assert found == []
    assert rules_of("birthday", "Drop in any time!") == ["promotion_in_greeting"]


def test_the_allow_list_also_exempts_meaning():
    lexicon = LEX.model_copy(update={"allow": Words(zh=("来店里坐坐",))})
    assert rules_of("birthday", "有空来店里坐坐") == ["promotion_in_greeting"]
    assert rules_of("birthday", "有空来店里坐坐", lexicon) == []


def test_judged_once_per_distinct_masked_text():
    meaning._judged.cache_clear()
    for name in ("张三", "李四", "王五"):
        text = f"{name}，中秋快乐！\n——静安店 小李\n回复TD退订"
        assert check("holiday", text, locale="zh_CN", lexicon=LEX, store_name="静安店",
                     assistant_name="小李", exempt=[name]) == []  # fmt: skip
    info = meaning._judged.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_the_index_gives_the_full_scans_answer():
    """A pattern is tried only when the text holds a character it can begin with (read
    from the parsed pattern): the answer is the full scan's, in table order."""
    texts = [n["text"] for part in ("greetings.jsonl", "greetings_heldout.jsonl")
             for n in _notes(part)] + ISSUE_PROMOTIONS + ISSUE_PRYING + WARM  # fmt: skip
    texts += [t.upper() for t in texts] + [t[::-1] for t in texts]
    for text in (normalize(t) for t in texts):
        for index, concepts in ((meaning._PROMOTION, meaning.PROMOTION_CONCEPTS),
                                (meaning._PRYING, ("prying",))):  # fmt: skip
            full = next(
                (meaning.Finding(c, m.group().strip()) for c in concepts
                 for p in meaning.PATTERNS[c] if (m := re.search(p, text))),
                None,
            )  # fmt: skip
            assert index.first(text) == full, text
    assert not meaning._PROMOTION.always and not meaning._PRYING.always  # all indexed


# --------------------------------------------------------------------------- the corpus


def _notes(name: str) -> list[dict]:
    return [json.loads(line) for line in (CORPUS / name).read_text("utf-8").splitlines() if line]


def test_corpus_is_large_enough_and_the_parts_are_disjoint():
    tuning, heldout = _notes("greetings.jsonl"), _notes("greetings_heldout.jsonl")
    assert len(tuning) + len(heldout) >= 300
    assert not {n["text"] for n in tuning} & {n["text"] for n in heldout}
    for notes in (tuning, heldout):
        assert {(n["label"], n["lang"]) for n in notes} == {
            (label, lang) for label in ("promotion", "prying", "warm") for lang in ("zh", "en")
        }


FLOOR = {"promotion_in_greeting": (0.93, 0.85), "prying_in_dormant": (0.95, 0.90)}
"""(precision, recall) floors on the held-out notes, set below what was measured
(bench/bench_greetings.py, 177 held-out notes): promotion 96.1 % / 88.1 %, prying
100 % / 92.9 %, no warm note refused. The held-out part is two batches: 128 notes written
before any pattern (100 % / 100 %) and 49 written after the patterns were widened, never
tuned on (first look: promotion recall 14/24, prying 4/6) — the second is the honest
figure for notes the patterns' author did not foresee (docs/greeting-rules.md)."""


@pytest.mark.parametrize("part", ["greetings_heldout.jsonl", "greetings.jsonl"])
def test_held_out_precision_recall_floor_and_no_warm_note_refused(part):
    notes = _notes(part)
    labels = {"promotion": "promotion_in_greeting", "prying": "prying_in_dormant"}
    got = [(n, set(rules_of("dormant", n["text"]))) for n in notes]
    assert [n["text"] for n, found in got if n["label"] == "warm" and found] == []
    for label, rule in labels.items():
        tp = sum(1 for n, found in got if n["label"] == label and rule in found)
        fp = sum(1 for n, found in got if n["label"] != label and rule in found)
        fn = sum(1 for n, found in got if n["label"] == label and rule not in found)
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        assert (precision, recall) >= (FLOOR[rule][0], 0) and recall >= FLOOR[rule][1], (
            rule, precision, recall,
        )  # fmt: skip


# --------------------------------------------------------------------------- every caller


def test_lint_refuses_a_template_that_promotes_by_meaning(tmp_path):
    root = tmp_path / "messages"
    shutil.copytree(render.MESSAGES_DIR, root)
    bad = root / "zh_CN" / "holiday.txt"
    bad.write_text("本周末店庆，来玩呀\n" + bad.read_text("utf-8"), "utf-8")
    found = lint_all(root, LEX)
    assert {(p, v.rule) for p, v in found} == {(bad, "promotion_in_greeting")}
    assert lint_all(render.MESSAGES_DIR, LEX) == []  # ours pass


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(NOON)
    monkeypatch.setattr(bot.api.greetings, "utcnow", c)
    return c


@pytest.mark.parametrize(
    "occasion, note, rule",
    [
        *(("other", n, "promotion_in_greeting") for n in ISSUE_PROMOTIONS),
        *(("dormant", n, "prying_in_dormant") for n in ISSUE_PRYING),
        ("birthday", "I've set aside a wool coat in your size.", "promotion_in_greeting"),
    ],
)
async def test_api_refuses_with_422_naming_the_rule(
    aiohttp_client, make_settings, sessions, clock, occasion, note, rule
):
    api = await aiohttp_client(create_app(make_settings()))
    tokens = await seed(api)
    body = {"member": PHONE, "occasion": occasion, "note": note}
    status, answer, _ = await call(api, body, tokens["A001"])
    assert status == 422, answer
    assert (answer["rule"], answer["field"]) == (rule, "note")
    assert await rows(sessions) == []


@pytest.mark.parametrize("occasion", ["other", "dormant", "birthday"])
async def test_api_queues_warm_notes(aiohttp_client, make_settings, sessions, clock, occasion):
    api = await aiohttp_client(create_app(make_settings()))
    tokens = await seed(api)
    for note in WARM[:4]:
        body = {"member": PHONE, "occasion": occasion, "note": note}
        status, answer, _ = await call(api, body, tokens["A001"])
        assert status == 202, answer
    assert len(await rows(sessions)) == 4


@pytest.mark.usefixtures("isolated_cli_env", "seeded")
async def test_greet_command_refuses_and_passes_by_meaning(sessions, config, capsys):  # noqa: F811
    base = ("--config", str(config), "greet", "--assistant", "A1", "--member", PHONE)
    assert await run(*base, "--occasion", "other", "--note", "冬装已经到了，来店里看看吧") == 1
    line = one_error_line(capsys.readouterr().err)
    assert "promotion_in_greeting" in line and "note" in line
    assert await run(*base, "--occasion", "dormant", "--note", "是不是我们哪里做得不好") == 1
    assert "prying_in_dormant" in one_error_line(capsys.readouterr().err)
    assert await outbox_rows(sessions) == []
    assert await run(*base, "--occasion", "dormant", "--note", "好久不见，最近好吗?") == 0
    assert len(await outbox_rows(sessions)) == 1


async def test_planner_suppresses_a_greeting_that_promotes_by_meaning(sessions, make_settings):
    """A festival named by configuration is rendered into the holiday greeting: one that
    invites to the store is recorded suppressed with the rule, never sent."""
    festival = {"code": "come_in", "name_zh": "到店有礼日", "name_en": "Drop In Day",
                "calendar": "solar", "month": 11, "day": 11}  # fmt: skip
    settings = make_settings(occasions={"festivals": [festival]})
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        zh = await member(session, store, helper)
        en = await member(session, store, helper, locale="en")
    planned = await plan(sessions, settings, date(2026, 11, 11))
    for m in (zh, en):
        p = one(planned, m, "holiday")
        assert (p.status, p.reason) == ("suppressed", "rule:promotion_in_greeting")


async def test_console_preview_names_the_rule_and_send_is_refused(client, world, sessions):  # noqa: F811
    await sign_in(client, world.tokens["A001"])
    member_id = world.members["张三"]
    csrf = await csrf_of(client, f"/staff/members/{member_id}")
    url = f"/staff/members/{member_id}/greeting"
    form = {"occasion": "other", "note": "给您留了一件羊绒大衣", "csrf_token": csrf}
    page = await (await client.post(url, data={**form, "action": "preview"})).text()
    assert "不符合消息规则" in page and "promotion_in_greeting" in page
    assert "an item held for the member" in page
    resp = await client.post(url, data={**form, "action": "send"})
    assert resp.status == 422
    assert await rows(sessions) == []
    warm = {**form, "note": "天冷了注意保暖", "action": "preview"}
    assert "已通过消息规则检查" in await (await client.post(url, data=warm)).text()
