"""The fast rules check gives exactly the verdicts of the straightforward one.

`scheduler.message_rules.check` skips the full lexicon scan of a category when
`scheduler.lexicon.may_hit` finds no clue of it in the text, and looks up the
exempt spans only when some category is scanned. `reference_check` below is
the check without either shortcut: every category scanned with its whole
alternation, the exempt spans always computed. Both run over a corpus built to
make a wrong shortcut show: every lexicon entry (and a sample of every ``re:``
entry) inside real message texts, in full width, upper case, with spaces or
hyphens inside, as a member-record value (exempt), next to near-misses, plus
random strings over the lexicon's own characters.
"""

from __future__ import annotations

import random
import re
import string

import pytest

from models.kinds import KINDS, LOCALES, STOP_HINTS, MessageClass, kind_spec, stop_hint
from models.settings.lexicon import Lexicon, Words, normalize
from scheduler import render
from scheduler.lexicon import _entry_pattern, compact, may_hit
from scheduler.meaning import CONCEPTS, MASK, PROMOTION_CONCEPTS, mask
from scheduler.meaning_patterns import PATTERNS, THANKS_FOR_VISITING
from scheduler.message_rules import Violation, _signature_line, check, data_phrases

LEX = Lexicon()
CATEGORIES = ("promotion", "new_arrivals", "products", "prying", "allow")
CHECKED_KINDS = ("birthday", "points_notice", "care_d3", "care_d30", "seasonal", "dormant")
"""One kind of each class, the care kind that may name new arrivals, and the two
kinds with their own word lists."""

RE_SAMPLES = {
    # promotion, zh
    r"re:[¥$€£]\s*\d+(?:[,.]\d+)*": ["¥199", "￥ 1,299.50", "$5", "€ 20", "£3.5"],
    r"re:\d+(?:\.\d+)?\s*元(?![旦宵])": ["199元", "19.9 元", "３００元", "2元旦", "5元宵"],
    r"re:(?:\d+(?:\.\d+)?|[一二三四五六七八九]{1,2})\s*折(?![叠痕断腾])": [
        "8折",
        "7.5 折",
        "八折",
        "六五折",
        "3折叠",
        "九折痕",
    ],  # fmt: skip
    r"re:满\s*[\d一二三四五六七八九十百千]+.{0,8}?[送减返]": [
        "满300送",
        "满 三百 减",
        "满1000元立返",
        "满五百就可以再送",
        "满意送",
    ],  # fmt: skip
    # promotion, en
    r"re:[$€£¥]\s*\d+(?:[,.]\d+)*": ["$99", "£ 1,000"],
    r"re:\d+(?:\.\d+)?\s*%\s*off": ["50% off", "12.5 % OFF", "50%off", "50% offer"],
    r"re:\bup to \d+\s*%": ["up to 30%", "UP TO 70 %", "setup to 30%", "up to %"],
}

FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in string.ascii_letters + string.digits + "%$"}


def reference_check(
    kind: str,
    text: str,
    *,
    locale: str,
    lexicon: Lexicon,
    store_name: str | None,
    assistant_name: str | None,
    exempt: list[str],
) -> list[Violation]:
    """The rules check without shortcuts (the code before the fast path)."""
    spec = kind_spec(kind)
    norm = normalize(text)
    names = [n for n in (store_name, assistant_name) if n]
    spans: list[tuple[int, int]] = []
    allow = _pattern(lexicon.allow)
    if allow is not None:
        spans.extend(m.span() for m in allow.finditer(norm))
    for phrase in (*STOP_HINTS.values(), *names, *exempt):
        p = normalize(phrase).strip()
        start = norm.find(p) if p else -1
        while start >= 0:
            spans.append((start, start + len(p)))
            start = norm.find(p, start + 1)
    cls = spec.message_class
    what_class = {
        MessageClass.GREETING: "a greeting",
        MessageClass.SERVICE: "a service notice",
        MessageClass.CARE: "a care message",
    }[cls]
    out: list[Violation] = []

    def flag(rule: str, words: Words, what: str) -> None:
        pattern = _pattern(words)
        if pattern is None:
            return
        found: list[str] = []
        for m in pattern.finditer(norm):
            s, e = m.span()
            if e > s and not any(a <= s and e <= b for a, b in spans) and m.group() not in found:
                found.append(m.group())
        for hit in found:
            out.append(Violation(rule, f'{what} "{hit}" in {what_class} ({kind})'))

    if cls is MessageClass.CARE:
        flag("promotion_in_care", lexicon.promotion, "promotion word")
        if not spec.new_arrivals_allowed:
            flag("new_arrivals_in_care", lexicon.new_arrivals, "new-arrival word")
    else:
        rule = f"promotion_in_{'greeting' if spec.is_greeting else 'service_notice'}"
        flag(rule, lexicon.promotion, "promotion word")
        flag(rule, lexicon.new_arrivals, "new-arrival word")
    if kind == "seasonal":
        flag("product_in_seasonal", lexicon.products, "product")
    if kind == "dormant":
        flag("prying_in_dormant", lexicon.prying, "prying question")
    if spec.is_greeting:
        out.extend(reference_meaning(kind, norm, lexicon, (*names, *exempt), {v.rule for v in out}))
    hint = normalize(stop_hint(locale))
    if spec.needs_signature and names:
        line = _signature_line(norm, hint)
        missing = [n for n in names if normalize(n).strip() not in line]
        if missing:
            out.append(
                Violation(
                    "missing_signature",
                    f"the last line must carry the store and assistant names; missing {missing}",
                )
            )
    if spec.needs_stop_hint and hint not in norm:
        out.append(Violation("missing_stop_hint", f'no stop hint "{stop_hint(locale)}"'))
    return out


def reference_meaning(
    kind: str, norm: str, lexicon: Lexicon, phrases: tuple[str, ...], found: set[str]
) -> list[Violation]:
    """The meaning rules without the cache or the first-character index: every pattern of
    `scheduler.meaning_patterns` tried, in table order."""
    masked = mask(norm, [normalize(p).strip() for p in (*STOP_HINTS.values(), *phrases)])
    allow = _pattern(lexicon.allow)
    for s, e in sorted((m.span() for m in allow.finditer(masked)) if allow else (), reverse=True):
        masked = masked[:s] + MASK + masked[e:]
    out: list[Violation] = []
    if kind == "dormant":
        spans = [m.span() for p in PATTERNS["prying"] for m in re.finditer(p, masked)]
        if spans:
            s, e = spans[0]
            if "prying_in_dormant" not in found:
                what = CONCEPTS["prying"]
                phrase = masked[s:e].strip()
                out.append(
                    Violation("prying_in_dormant", f'{what} "{phrase}" in a greeting ({kind})')
                )
            for s, e in sorted(spans, reverse=True):
                masked = masked[:s] + MASK + masked[e:]
    masked = THANKS_FOR_VISITING.sub(MASK, masked)
    for concept in PROMOTION_CONCEPTS:
        hit = next((m for p in PATTERNS[concept] if (m := re.search(p, masked))), None)
        if hit is not None:
            if "promotion_in_greeting" not in found:
                what, phrase = CONCEPTS[concept], hit.group().strip()
                out.insert(
                    0,
                    Violation("promotion_in_greeting", f'{what} "{phrase}" in a greeting ({kind})'),
                )
            break
    return out


_PATTERNS: dict[Words, re.Pattern[str] | None] = {}


def _pattern(words: Words) -> re.Pattern[str] | None:
    if words not in _PATTERNS:
        parts = [f"(?:{_entry_pattern(e)})" for e in words.entries]
        _PATTERNS[words] = re.compile("|".join(parts)) if parts else None
    return _PATTERNS[words]


# --------------------------------------------------------------------------- corpus


def _samples(entry: str) -> list[str]:
    """The entry as written and in the disguises the matching must see through, plus
    near-misses that must not match (or must match exactly as the reference does)."""
    if entry.startswith("re:"):
        return RE_SAMPLES.get(entry, [])
    out = [entry, entry.upper(), entry.title(), "".join(FULL_WIDTH.get(c, c) for c in entry)]
    if re.search(r"[A-Za-z]", entry):
        out += [
            entry.replace(" ", "-"),
            entry.replace(" ", "  "),
            entry + "s",
            entry + "es",
            entry + "ed",
            entry + "ly",
            "x" + entry,
            entry[:-1],
            entry[1:],
            f"{entry}!",
        ]
    else:
        out += [" ".join(entry), "\u200b".join(entry), entry[:-1], entry[1:], entry + entry[-1]]
    return [s for s in out if s.strip()]


def _base_texts() -> list[tuple[str, dict]]:
    out = []
    for locale in LOCALES:
        for kind in ("birthday", "points_notice", "care_d3", "seasonal", "dormant"):
            ctx = render.sample_contexts(kind, locale)[0]
            out.append((render.render_message(kind, locale, **ctx), {**ctx, "locale": locale}))
    return out


def _lexicon_alphabet(lexicon: Lexicon) -> str:
    chars = set(" -\n%$¥0123456789")
    for name in CATEGORIES:
        for entry in getattr(lexicon, name).entries:
            if not entry.startswith("re:"):
                chars.update(entry)
                chars.update(entry.upper())
    chars.update("元折满送减返旦宵叠")
    return "".join(sorted(chars))


def corpus(lexicon: Lexicon, seed: int = 4) -> list[tuple[str, str, dict]]:
    """(text, locale, context) triples."""
    rng = random.Random(seed)
    bases = _base_texts()
    out: list[tuple[str, str, dict]] = []
    for text, ctx in bases:
        out.append((text, ctx["locale"], ctx))
    for name in CATEGORIES:
        for entry in getattr(lexicon, name).entries:
            for sample in _samples(entry):
                text, ctx = rng.choice(bases)
                lines = text.split("\n")
                i = rng.randrange(len(lines))
                cut = rng.randrange(len(lines[i]) + 1)
                lines[i] = lines[i][:cut] + sample + lines[i][cut:]
                out.append(("\n".join(lines), ctx["locale"], ctx))
                # the same words as a value of the member's record (exempt) ...
                out.append((text.replace(ctx["store_name"], sample), ctx["locale"],
                            {**ctx, "store_name": sample}))  # fmt: skip
                # ... or right next to it
                out.append((text.replace(ctx["assistant_name"], ctx["assistant_name"] + sample),
                            ctx["locale"], ctx))  # fmt: skip
                out.append((sample, ctx["locale"], ctx))
    alphabet = _lexicon_alphabet(lexicon)
    for _ in range(1500):
        noise = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        text, ctx = rng.choice(bases)
        out.append((noise, ctx["locale"], ctx))
        out.append((text + noise, ctx["locale"], ctx))
    return out


def _both(kind: str, text: str, locale: str, ctx: dict, lexicon: Lexicon):
    args = dict(
        locale=locale,
        lexicon=lexicon,
        store_name=ctx.get("store_name"),
        assistant_name=ctx.get("assistant_name"),
        exempt=data_phrases(ctx, locale),
    )
    return check(kind, text, **args), reference_check(kind, text, **args)


# --------------------------------------------------------------------------- tests


def test_the_gate_finds_a_clue_wherever_a_category_matches():
    """The property the shortcut rests on: no hit of the full scan without a clue."""
    for text, _locale, _ctx in corpus(LEX):
        norm = normalize(text)
        squeezed = compact(norm)
        for name in CATEGORIES:
            words = getattr(LEX, name)
            if _pattern(words).search(norm):
                assert may_hit(squeezed, words), (name, text)


def test_fast_and_reference_checks_agree_on_the_corpus():
    texts = corpus(LEX)
    assert len(texts) > 5000
    differ = []
    for i, (text, locale, ctx) in enumerate(texts):
        for kind in CHECKED_KINDS[i % 3 :: 3]:  # two kinds a text, all six in turn
            fast, ref = _both(kind, text, locale, ctx, LEX)
            if fast != ref:
                differ.append((kind, text, fast, ref))
    assert differ == []


def test_the_corpus_makes_every_entry_hit():
    """Not vacuous: every entry of every checked category is found by the reference
    somewhere in the corpus (a gate that missed one entry would show above)."""
    texts = [normalize(t) for t, _l, _c in corpus(LEX)]
    for name in ("promotion", "new_arrivals", "products", "prying"):
        for entry in getattr(LEX, name).entries:
            pattern = re.compile(_entry_pattern(entry))
            assert any(pattern.search(t) for t in texts), (name, entry)


def test_most_ordinary_texts_skip_the_scan():
    """The point of the gate: the templates' own texts give no clue (care_d30 may name
    new arrivals, so its text does)."""
    for locale in LOCALES:
        for kind in KINDS:
            if kind == "care_d30":
                continue
            ctx = {**render.sample_contexts(kind, locale)[0], "note": "", "reward_name": None}
            squeezed = compact(normalize(render.render_message(kind, locale, **ctx)))
            assert not may_hit(squeezed, LEX.new_arrivals), (kind, locale)
            assert not may_hit(squeezed, LEX.prying), (kind, locale)


CUSTOM = Lexicon(
    promotion=Words(
        zh=("买-送", "限 时", r"re:(抢|秒)购", r"re:(买)\1", r"re:\d{3}", r"re:第\d+件半价"),
        en=("pre-order", "flash  sale", r"re:(?i:mega)", r"re:x-y", r"re:up to\s+\d+", r"re:a|b"),
    ),
    new_arrivals=Words(zh=("新到",), en=(r"re:brand[- ]new", r"re:\bfresh\b")),
    products=Words(en=("tee",)),
    prying=Words(zh=(r"re:为什么.{0,4}(?:没|不)来",)),
    allow=Words(zh=("限时间",), en=("pre order form",)),
)


@pytest.mark.parametrize(
    "text",
    [
        "买送", "买买", "买 - 送", "限时", "限 时", "抢购", "秒购", "123", "12", "第2件半价",
        "第件半价",
        "preorder", "pre order", "pre-orders", "flash sale", "flash-sale", "MEGA", "mega",
        "x-y", "xy", "x - y", "up to 5", "upto 5", "a", "b", "brand-new", "brand new",
        "brandnew", "fresh", "refresh", "tees", "为什么最近没来", "为什么不来", "限时间",
        "pre order form", "Ａ", "ｍｅｇａ", "１２３",
    ],
)  # fmt: skip
def test_custom_lexicons_with_odd_entries_agree(text):
    """Entries the gate cannot read a clue from (a part that ignores case, digits
    only, a top-level alternative, a back-reference) make it scan every text; with
    capturing groups the whole alternation is scanned; hyphens and odd spacing are
    squeezed out of both sides."""
    ctx = {"store_name": "静安店", "assistant_name": "小李", "member_name": "王女士"}
    for base in ("", "祝您生日快乐！{}\n——静安店 小李\n回复TD退订", "Happy {} day\nReply STOP"):
        body = base.format(text) if base else text
        for locale in LOCALES:
            for kind in CHECKED_KINDS:
                fast, ref = _both(kind, body, locale, ctx, CUSTOM)
                assert fast == ref, (kind, body)


def test_custom_corpus_agrees():
    differ = []
    for text, locale, ctx in corpus(CUSTOM, seed=9)[::3]:
        for kind in CHECKED_KINDS:
            fast, ref = _both(kind, text, locale, ctx, CUSTOM)
            if fast != ref:
                differ.append((kind, text))
    assert differ == []
