"""How the words of a `Lexicon` match a text (`models.settings.lexicon` holds the words).

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
from collections.abc import Iterable
from functools import lru_cache

from models.settings.lexicon import Lexicon, Words, normalize

# --------------------------------------------------------------------------- matching

_LATIN = re.compile(r"[a-z0-9]")


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


def allow_spans(norm: str, allow: Words) -> list[tuple[int, int]]:
    """Where, in normalised text `norm`, the phrases of `allow` (the lexicon's ``allow``) occur."""
    pattern = _scanner(norm, allow)
    return [m.span() for m in pattern.finditer(norm)] if pattern is not None else []


def exempt_spans(norm: str, lexicon: Lexicon, phrases: Iterable[str]) -> list[tuple[int, int]]:
    """Where, in normalised text `norm`, the ``allow`` phrases and the given `phrases` occur."""
    spans = allow_spans(norm, lexicon.allow)
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
