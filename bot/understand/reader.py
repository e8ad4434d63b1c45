"""Reading one message: the keyword first, the sentence only when no keyword matched.

`Reader(router, catalogue).read(text)` → the `bot.router.Match` the bot dispatches:

- a keyword match as the router gives it, with the language it is written in
  ("POINTS" → "en", "积分" → "zh_CN", "JF" → None);
- a keyword whose argument is a sentence ("兑换啥好", "领卡要带什么") → what the
  sentence means (`Understander.refine`);
- no keyword → the sentence's meaning (`Understander.understand`).

A pure function of the text: the bot remembers recent answers (`ROUTES_KEPT`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

from bot.router import Intent, Match, Router
from bot.understand.engine import Understander
from bot.understand.text import language
from models.rules import Reward

ROUTES_KEPT = 1024
"""Read texts remembered, up to `CACHED_LENGTH` characters each (`Match` values are immutable)."""
CACHED_LENGTH = 64


class Reader:
    def __init__(self, router: Router, catalogue: Sequence[Reward] = ()):
        self._router = router
        self._understander = Understander(catalogue)
        self._cached = lru_cache(maxsize=ROUTES_KEPT)(self._read)

    def read(self, text: str) -> Match:
        return self._cached(text) if len(text) <= CACHED_LENGTH else self._read(text)

    def _read(self, text: str) -> Match:
        match = self._router.route(text)
        if match.intent is Intent.UNKNOWN:
            return self._understander.understand(text, match.text)
        refined = self._understander.refine(match, text)
        if refined is not match:
            return refined
        lang = language(text)
        return match if lang is None else replace(match, lang=lang)
