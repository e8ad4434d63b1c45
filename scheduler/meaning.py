"""What a greeting means: promotion and prying judged by meaning patterns, not words alone.

The lexicon (`scheduler.lexicon`) catches words: 促销, 新品, "sale". A note can
promote without them — 欢迎到店选购, 冬装已经到了，来店里看看吧, 给您留了一件羊绒大衣,
本周末店庆，来玩呀, 积分可以换礼品了 — or pry without the listed questions —
最近怎么都不来了呀, 是不是我们哪里做得不好. Here each *concept* is a set of regular
patterns over normalised text (`models.settings.lexicon.normalize`: NFKC, case-folded)
that pair what the sentence does with what it is about (the patterns, with examples,
are in `scheduler.meaning_patterns`):

- ``invitation``: a come/visit verb + the store, or + look/try (来店里, 过来看看, 欢迎光临;
  pop in, come by, visit us, in store);
- ``shopping``: a shopping verb (选购, 入手, 买件大衣; shop with us, browse, treat yourself);
- ``arrival``: goods + arrived, season's clothes, new styles (冬装到了, 新到一批, 上架;
  the autumn range is in, new pieces, back in stock);
- ``store_event``: the store's events and anniversaries (店庆, 周年庆, 新店开业, 诚邀;
  store anniversary, trunk show, join us, you're invited);
- ``held_item``: something kept for the member (给您留了一件, 帮您预留, 最后一件, 先到先得;
  set aside, saved … for you);
- ``price``: prices and sums (六百多, 划算, 原价, 满千减百; only 199 yuan, half price);
- ``benefit``: gifts, free services, perks (送您一份礼物, 免费熨烫, 领取, 专享; free gift,
  complimentary, perk);
- ``points``: points with an offer (积分可以换, 积分快清零了; redeem your points);
- ``product_push``: garments + push words, "suits you", sizes (这款很适合您, 您的尺码;
  would look great on you, in your size);
- ``prying``: asking why the member stayed away or what went wrong (怎么都不来了,
  是不是我们哪里做得不好, 是不是去别的店了; why haven't you…, did we do something wrong).

What stays warm: weather, health, travel, family, seasons and festivals ("冬天到了" is
the season, "冬装到了" the goods; "来年" and "出来走走" are no invitation); "好久不见，
最近好吗" greets (asking how someone is), "最近怎么都不来了" asks why they stayed away
(a why-word before a negated come/visit verb), "是不是…不满/失望/做得不好" fishes for a
grievance. Negated visits (没来店里, haven't been in) are not invitations.

`findings(norm, phrases, allow, prying=...)` is what `scheduler.message_rules` asks:
the first promotion `Finding` (concept, the matched text) and, for a ``dormant`` text,
the first prying one (`judge`), in the normalised text with the member-record values,
stop hints and the lexicon's ``allow`` phrases replaced by `MASK` (`mask`): a store
called "新品汇" or the hint "Reply STOP" is no finding. Results are cached per distinct
masked text: the planner's greetings differ only in the values masked, so a festival
day judges a handful of texts.
Deterministic, local, no model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from re import _constants as _c
from re import _parser

from models.settings.lexicon import Words, normalize
from scheduler.lexicon import allow_spans
from scheduler.meaning_patterns import PATTERNS, THANKS_FOR_VISITING

MASK = "〇"
"""What a masked value becomes: one character no pattern uses."""


@dataclass(frozen=True)
class Finding:
    concept: str
    phrase: str

    @property
    def what(self) -> str:
        return CONCEPTS[self.concept]


CONCEPTS: dict[str, str] = {
    "invitation": "an invitation to come to the store",
    "shopping": "a call to shop",
    "arrival": "new arrivals",
    "store_event": "a store event",
    "held_item": "an item held for the member",
    "price": "a price",
    "benefit": "a benefit or gift",
    "points": "a points offer",
    "product_push": "a product push",
    "prying": "asking why the member stayed away",
}
PROMOTION_CONCEPTS = tuple(c for c in CONCEPTS if c != "prying")


def _in_chars(items: list) -> set[str] | None:
    out: set[str] = set()
    for op, av in items:
        if op is _c.LITERAL:
            out.add(chr(av))
        elif op is _c.RANGE and av[1] - av[0] < 256:
            out.update(chr(i) for i in range(av[0], av[1] + 1))
        elif op is _c.CATEGORY and av is _c.CATEGORY_DIGIT:
            out.update("0123456789")
        else:
            return None
    return out


def _first_chars(items) -> tuple[set[str] | None, bool]:
    """(the characters a match of the parsed sequence `items` can begin with, None when
    any; whether it can match empty). Assertions (lookarounds, ``\\b``) take no character."""
    acc: set[str] = set()
    for op, av in items:
        if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            continue
        if op is _c.LITERAL:
            first, nullable = {chr(av)}, False
        elif op is _c.IN:
            first, nullable = _in_chars(av), False
        elif op is _c.SUBPATTERN:
            first, nullable = _first_chars(av[-1])
        elif op is _c.BRANCH:
            first, nullable = set(), False
            for alt in av[1]:
                f, n = _first_chars(alt)
                if f is None:
                    return None, True
                first |= f
                nullable |= n
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            first, n = _first_chars(av[2])
            nullable = av[0] == 0 or n
        else:
            return None, True
        if first is None:
            return None, True
        acc |= first
        if not nullable:
            return acc, False
    return acc, True


@dataclass(frozen=True)
class _Index:
    """Patterns in concept order, and which of them a text's characters can start."""

    patterns: tuple[tuple[str, re.Pattern[str]], ...]
    always: frozenset[int]
    by_char: dict[str, frozenset[int]]

    @classmethod
    def of(cls, concepts: Iterable[str]) -> _Index:
        patterns = tuple((c, re.compile(p)) for c in concepts for p in PATTERNS[c])
        always: set[int] = set()
        by_char: dict[str, set[int]] = {}
        for i, (_concept, compiled) in enumerate(patterns):
            first, nullable = _first_chars(_parser.parse(compiled.pattern))
            if first is None or nullable:
                always.add(i)
            else:
                for ch in first:
                    by_char.setdefault(ch, set()).add(i)
        return cls(patterns, frozenset(always), {k: frozenset(v) for k, v in by_char.items()})

    def _live(self, text: str) -> list[int]:
        """The patterns that can begin with a character of `text`, in table order."""
        live = set(self.always)
        for ch in set(text):
            found = self.by_char.get(ch)
            if found:
                live |= found
        return sorted(live)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where any pattern matches `text`, in table order."""
        return [m.span() for i in self._live(text) for m in self.patterns[i][1].finditer(text)]

    def first(self, text: str) -> Finding | None:
        """The first concept (in table order) one of whose patterns matches `text`."""
        for i in self._live(text):
            concept, pattern = self.patterns[i]
            m = pattern.search(text)
            if m is not None:
                return Finding(concept, m.group().strip())
        return None


_PROMOTION = _Index.of(PROMOTION_CONCEPTS)
_PRYING = _Index.of(("prying",))


# --------------------------------------------------------------------------- masking and judging


def mask(norm: str, phrases: Iterable[str]) -> str:
    """Normalised text `norm` with every occurrence of `phrases` replaced by `MASK`.

    A phrase is looked for as given, then normalised (`normalize`: most names are
    already in normal form, so the planner rarely normalises one). Phrases under two
    characters are left alone (a one-character name would blank out a word)."""
    for p in dict.fromkeys(phrases):
        if p not in norm:
            p = normalize(p).strip()
            if p not in norm:
                continue
        if len(p) >= 2:
            norm = norm.replace(p, MASK)
    return norm


def judge(masked: str, *, promotion: bool = True, prying: bool = False) -> tuple[Finding, ...]:
    """The findings in `masked` (normalised, member values masked): the first promotion
    finding and, when `prying`, the first prying one. A prying question's own words
    (是不是价格让您不满意) are its object, not a promotion: when `prying`, they are masked
    before the promotion patterns look, and so is thanks for a visit already made.
    """
    found: list[Finding] = []
    if prying:
        spans = _PRYING.spans(masked)
        if spans:
            found.append(Finding("prying", masked[spans[0][0] : spans[0][1]].strip()))
            for start, end in sorted(spans, reverse=True):
                masked = masked[:start] + MASK + masked[end:]
    if promotion:
        masked = THANKS_FOR_VISITING.sub(MASK, masked)
        if (hit := _PROMOTION.first(masked)) is not None:
            found.insert(0, hit)
    return tuple(found)


def findings(
    norm: str, phrases: Iterable[str], allow: Words, *, prying: bool
) -> tuple[Finding, ...]:
    """`judge` of normalised text `norm` with `phrases` (member-record values, stop hints)
    and the lexicon's `allow` phrases masked; what `scheduler.message_rules` asks."""
    return _judged(mask(norm, phrases), allow, prying)


@lru_cache(maxsize=4096)
def _judged(masked: str, allow: Words, prying: bool) -> tuple[Finding, ...]:
    for start, end in sorted(allow_spans(masked, allow), reverse=True):
        masked = masked[:start] + MASK + masked[end:]
    return judge(masked, prying=prying)
