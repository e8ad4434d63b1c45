"""The words the message rules look for, and how they match (``[messaging.lexicon]``).

A `Lexicon` has five categories of `Words`, each with Chinese and English
entries — both languages apply to every text (a Chinese greeting may still say
"SALE"): ``promotion``, ``new_arrivals``, ``products``, ``prying`` and
``allow`` (phrases that are never a hit though they contain a listed word, e.g.
"户外活动" is exercise, not an event). The defaults are deliberately not eager:
a false hit blocks a kind message, a missed one sends a promotion in a greeting.

Matching:

- text and entries are NFKC-normalised (full-width letters, digits and ``￥``
  fold to their plain forms), case-folded, zero-width characters removed, curly
  quotes straightened, runs of spaces collapsed (`normalize`);
- an entry with Latin letters or digits matches whole words only, plus a plural
  ``s``/``es``: "offer" hits "offers" but not "offered", "event" not
  "eventually", "price" not "priceless"; spaces and hyphens inside it match any
  run of spaces or hyphens ("limited time" = "limited-time");
- an entry without Latin letters (Chinese) matches as a substring, spaces
  between its characters tolerated ("新 品" = "新品");
- an entry ``re:<pattern>`` is a regular expression over the normalised text
  (``¥199``, ``8折``, ``满300送``);
- a hit lying wholly inside an exempt span (an ``allow`` phrase or a phrase the
  caller names) is ignored (`hits`).

Speed: scanning a text with a category's whole alternation tries every entry at
every position. `may_hit` first looks, in one pass over the text with its
whitespace and hyphens removed, for a literal piece that every match of some
entry must contain (the entry itself without spaces and hyphens, or a literal
run or character set read from a ``re:`` pattern); only when one is found does
`hits` run. Most texts contain none, so their check is a single fast search;
the answer is the same either way (tests/test_rules_fast_path.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Words(BaseModel):
    """One lexicon category: Chinese and English entries (both apply to every text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zh: tuple[str, ...] = ()
    en: tuple[str, ...] = ()

    @field_validator("zh", "en")
    @classmethod
    def _entries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for entry in v:
            if not normalize(entry).strip():
                raise ValueError("empty entry")
            if entry.startswith("re:"):
                try:
                    compiled = re.compile(entry[3:])
                except re.error as exc:
                    raise ValueError(f"{entry!r}: bad regular expression ({exc})") from None
                if compiled.search(""):
                    raise ValueError(f"{entry!r}: the pattern matches empty text")
                try:  # entries are joined into one alternation: global flags can't be inside
                    re.compile(f"x|(?:{entry[3:]})")
                except re.error as exc:
                    raise ValueError(
                        f"{entry!r}: cannot be combined with other entries ({exc}); "
                        "use a scoped flag such as (?i:...) — texts are already lower-cased"
                    ) from None
        return v

    @property
    def entries(self) -> tuple[str, ...]:
        return self.zh + self.en


# fmt: off
def _words(zh: Iterable[str], en: Iterable[str]):
    return lambda: Words(zh=tuple(zh), en=tuple(en))


_PROMOTION_ZH = (
    "促销", "打折", "折扣", "优惠", "特价", "特惠", "降价", "满减", "代金券", "优惠券", "券",
    "积分兑换", "双倍积分", "积分翻倍", "多倍积分", "活动", "会员日", "秒杀", "清仓", "限时",
    "限量", "抢购", "大促", "买一送一", "赠品", "包邮", "元起",
    r"re:[¥$€£]\s*\d+(?:[,.]\d+)*",
    r"re:\d+(?:\.\d+)?\s*元(?![旦宵])",
    r"re:(?:\d+(?:\.\d+)?|[一二三四五六七八九]{1,2})\s*折(?![叠痕断腾])",
    r"re:满\s*[\d一二三四五六七八九十百千]+.{0,8}?[送减返]",
)
_PROMOTION_EN = (
    "sale", "discount", "discounted", "deal", "offer", "coupon", "voucher", "promo",
    "promo code", "promotion", "event", "clearance", "limited time", "buy one", "bogo",
    "free gift", "free shipping", "price", "double points", "bonus points", "extra points",
    "shop now", "member day",
    r"re:[$€£¥]\s*\d+(?:[,.]\d+)*",
    r"re:\d+(?:\.\d+)?\s*%\s*off",
    r"re:\bup to \d+\s*%",
)
_NEW_ARRIVALS_ZH = ("新品", "新款", "上新", "到货", "新货", "新上市", "新系列")
_NEW_ARRIVALS_EN = (
    "new arrival", "new collection", "latest collection", "just arrived", "just landed",
    "new in store", "now in store", "new stock", "back in stock", "new style",
)
_PRODUCTS_ZH = (
    "外套", "大衣", "风衣", "羽绒服", "棉服", "毛衣", "针织衫", "开衫", "卫衣", "衬衫", "T恤",
    "西装", "裤", "裙", "鞋", "靴", "包包", "手袋", "手提包", "背包", "钱包", "皮包", "围巾",
    "帽子",
)
_PRODUCTS_EN = (
    "jacket", "coat", "overcoat", "parka", "sweater", "jumper", "cardigan", "knitwear", "hoodie",
    "shirt", "blouse", "dress", "skirt", "trousers", "pants", "jeans", "shorts", "blazer",
    "shoe", "boot", "sneaker", "handbag", "bag", "wallet", "scarf", "scarves", "hat",
)
_PRYING_ZH = (
    "发生了什么", "发生什么", "出什么事", "出了什么事", "出啥事", "怎么了", "为什么没来",
    "为什么不来", "怎么没来", "怎么不来", "为何没来", "是不是不满意", "是否不满意",
    "哪里不满意", "对我们不满意", "遇到什么", "遇到了什么", "有什么事吗", "一切还好吗",
    "一切都好吗",
)
_PRYING_EN = (
    "what happened", "did something happen", "did anything happen", "has something happened",
    "is everything ok", "is everything okay", "is everything all right", "is everything alright",
    "are you ok", "are you okay", "why haven't you", "why have you not", "why did you stop",
    "something wrong", "anything wrong", "what's wrong", "what went wrong", "unhappy with us",
    "not happy with us",
)
_ALLOW_ZH = ("户外活动", "活动筋骨", "活动身体", "活动自如", "多活动", "上新台阶")
_ALLOW_EN = ("dress warmly", "dress in layers", "a great deal of", "a good deal of")

# fmt: on


class Lexicon(BaseModel):
    """The words the rules look for (``[messaging.lexicon]``); defaults are sensible, not eager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    promotion: Words = Field(default_factory=_words(_PROMOTION_ZH, _PROMOTION_EN))
    """Sale, discount, price, coupon/voucher, points offer, event: banned in every class."""
    new_arrivals: Words = Field(default_factory=_words(_NEW_ARRIVALS_ZH, _NEW_ARRIVALS_EN))
    """New arrivals: banned in greetings and service notices; in care only care_d30 may."""
    products: Words = Field(default_factory=_words(_PRODUCTS_ZH, _PRODUCTS_EN))
    """Product names: banned in seasonal messages."""
    prying: Words = Field(default_factory=_words(_PRYING_ZH, _PRYING_EN))
    """Asking whether something happened: banned in dormant messages."""
    allow: Words = Field(default_factory=_words(_ALLOW_ZH, _ALLOW_EN))
    """Phrases that are never a hit, though they contain a listed word."""


# --------------------------------------------------------------------------- matching

_ZERO_WIDTH = {ord(c): None for c in "\u200b\u200c\u200d\u2060\ufeff"}
_QUOTES = {ord("\u2018"): "'", ord("\u2019"): "'", ord("\u201c"): '"', ord("\u201d"): '"'}
_SPACES = re.compile(r"[^\S\n]+")
_ODD = re.compile("[" + "".join(map(chr, {**_ZERO_WIDTH, **_QUOTES})) + "]")
_LATIN = re.compile(r"[a-z0-9]")


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """NFKC, case-folded, zero-width characters dropped, quotes straightened, spaces collapsed.

    Cached: the planner checks thousands of texts sharing the same store and assistant
    names and stop hints (halves the rules check on a 1 M-member day). The NFKC pass
    and the character tables are skipped when they would change nothing."""
    folded = text
    if not unicodedata.is_normalized("NFKC", folded):
        folded = unicodedata.normalize("NFKC", folded)
    if _ODD.search(folded):
        folded = folded.translate(_ZERO_WIDTH).translate(_QUOTES)
    return _SPACES.sub(" ", folded.casefold())


def _entry_pattern(entry: str) -> str:
    if entry.startswith("re:"):
        return entry[3:]
    word = normalize(entry).strip()
    if not _LATIN.search(word):
        return r"\s*".join(re.escape(ch) for ch in word if not ch.isspace())
    parts = [re.escape(p) for p in re.split(r"[\s\-]+", word) if p]
    body = r"[\s\-]+".join(parts)
    if "a" <= word[-1] <= "z":
        body += "(?:s|es)?"
    head = r"(?<![a-z0-9])" if _LATIN.match(word[0]) else ""
    tail = r"(?![a-z0-9])" if _LATIN.match(word[-1]) else ""
    return f"{head}{body}{tail}"


@lru_cache(maxsize=64)
def _compiled(words: Words) -> re.Pattern[str] | None:
    patterns = [f"(?:{_entry_pattern(e)})" for e in words.entries]
    return re.compile("|".join(patterns)) if patterns else None


def compact(norm: str) -> str:
    """Normalised text `norm` without whitespace and hyphens: what `may_hit` looks at.

    Deleting characters keeps every substring a substring: whatever an entry
    matches in `norm`, its compacted form lies in the compacted text."""
    return "".join(norm.split()).replace("-", "")


def _squeeze(piece: str) -> str:
    return "".join(ch for ch in piece if not ch.isspace() and ch != "-")


def _required_run(pattern: str) -> list[str] | None:
    """Compacted strings of which every match of `pattern`, compacted, contains one.

    Read from the top level of the parsed pattern (each item there is part of
    every match): the longest run of consecutive literal characters, else the
    first character set made only of literals (whitespace and hyphens left out
    of both). None when there is neither, or when the pattern ignores case.
    """
    from re import _constants as c
    from re import _parser

    parsed = _parser.parse(pattern)
    if parsed.state.flags & re.IGNORECASE:
        return None
    runs: list[str] = []
    run = ""
    sets: list[list[str]] = []
    for op, av in parsed:
        if op is c.LITERAL:
            run += _squeeze(chr(av))
            continue
        if run:
            runs.append(run)
            run = ""
        if op is c.IN and av and all(o is c.LITERAL and _squeeze(chr(a)) for o, a in av):
            sets.append([chr(a) for _o, a in av])
    if run:
        runs.append(run)
    if runs:
        return [max(runs, key=len)]
    return sets[0] if sets else None


def _needles(entry: str) -> list[str] | None:
    """Strings of which the compacted text holds one wherever `entry` matches."""
    if entry.startswith("re:"):
        return _required_run(entry[3:])
    needle = _squeeze(normalize(entry))
    return [needle] if needle else None


@lru_cache(maxsize=64)
def _entry_needles(words: Words) -> tuple[tuple[str, ...] | None, ...]:
    """Per entry of `words`, its needles (`_needles`), or None when it has none."""
    return tuple(tuple(n) if n else None for n in map(_needles, words.entries))


@lru_cache(maxsize=64)
def _gate(words: Words) -> re.Pattern[str] | None:
    """A pattern that finds something in the compacted text whenever `_compiled(words)`
    finds a hit in the normalised text; None when some entry gives no such clue (then
    every text is scanned)."""
    needles: set[str] = set()
    for found in _entry_needles(words):
        if found is None:
            return None
        needles.update(found)
    return re.compile("|".join(re.escape(n) for n in sorted(needles, key=lambda n: (-len(n), n))))


def may_hit(compacted: str, words: Words) -> bool:
    """False only when no entry of `words` can match the text (`compact` of its normalised
    form): the cheap test that spares the full scan of `hits` for most texts."""
    if not words.entries:
        return False
    gate = _gate(words)
    return gate is None or gate.search(compacted) is not None


@lru_cache(maxsize=64)
def _splittable(words: Words) -> bool:
    """Whether an alternation of some of the entries matches as the whole one does where
    the others cannot match: not when a pattern has groups (their numbers would shift)."""
    return all(re.compile(e[3:]).groups == 0 for e in words.entries if e.startswith("re:"))


@lru_cache(maxsize=1024)
def _alternation(words: Words, live: tuple[int, ...]) -> re.Pattern[str] | None:
    entries = words.entries
    patterns = [f"(?:{_entry_pattern(entries[i])})" for i in live]
    return re.compile("|".join(patterns)) if patterns else None


@lru_cache(maxsize=64)
def _needle_index(words: Words) -> tuple[frozenset[int], tuple[tuple[str, frozenset[int]], ...]]:
    """(the entries without needles, every needle with the entries it stands for)."""
    always: set[int] = set()
    by_needle: dict[str, set[int]] = {}
    for i, found in enumerate(_entry_needles(words)):
        if found is None:
            always.add(i)
        else:
            for n in found:
                by_needle.setdefault(n, set()).add(i)
    return frozenset(always), tuple((n, frozenset(ix)) for n, ix in by_needle.items())


def _scanner(norm: str, words: Words) -> re.Pattern[str] | None:
    """The pattern `hits` scans `norm` with: the whole alternation of `words`, less the
    entries whose needles the text lacks. Those cannot match anywhere in it, so at every
    position the same entry wins as in the whole alternation, and `finditer` finds the
    same matches — over a handful of entries instead of all of them."""
    if not _splittable(words):
        return _compiled(words)
    compacted = compact(norm)
    always, needles = _needle_index(words)
    live = set(always)
    for n, entries in needles:
        if n in compacted:
            live |= entries
    return _alternation(words, tuple(sorted(live)))


def exempt_spans(norm: str, lexicon: Lexicon, phrases: Iterable[str]) -> list[tuple[int, int]]:
    """Where, in normalised text `norm`, the ``allow`` phrases and the given `phrases` occur."""
    spans: list[tuple[int, int]] = []
    allow = _scanner(norm, lexicon.allow)
    if allow is not None:
        spans.extend(m.span() for m in allow.finditer(norm))
    for phrase in phrases:
        p = normalize(phrase).strip()
        start = norm.find(p) if p else -1
        while start >= 0:
            spans.append((start, start + len(p)))
            start = norm.find(p, start + 1)
    return spans


def hits(norm: str, words: Words, spans: list[tuple[int, int]]) -> list[str]:
    """The distinct entries of `words` found in normalised text `norm`, outside the `spans`."""
    pattern = _scanner(norm, words)
    if pattern is None:
        return []
    found: list[str] = []
    for m in pattern.finditer(norm):
        s, e = m.span()
        if e > s and not any(a <= s and e <= b for a, b in spans) and m.group() not in found:
            found.append(m.group())
    return found
